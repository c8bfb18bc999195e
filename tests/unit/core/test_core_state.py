from pathlib import Path

import pytest

from dynod.errors import Conflict, NotFound
from dynod.state.db import Store
from dynod.state.records import (
    AppSettings,
    BuildStatus,
    FormationEntry,
    ReleaseStatus,
)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def test_apps_get_unique_uids_and_names(store: Store) -> None:
    a = store.create_app("alpha")
    b = store.create_app("beta")
    assert a.uid_index != b.uid_index
    with pytest.raises(Conflict, match="alpha is already taken"):
        store.create_app("alpha")
    assert [x.name for x in store.apps()] == ["alpha", "beta"]


def test_uid_indexes_are_never_reused(store: Store) -> None:
    a = store.create_app("alpha")
    store.delete_app("alpha")
    again = store.create_app("alpha")
    assert again.uid_index > a.uid_index


def test_missing_app_names_the_app(store: Store) -> None:
    with pytest.raises(NotFound, match="nope"):
        store.app("nope")


def test_release_versions_count_up_and_resolve(store: Store) -> None:
    app = store.create_app("alpha")
    for n in range(3):
        store.create_release(
            app,
            description=f"Deploy {n}",
            slug_digest="abc",
            config={"N": str(n)},
            process_types={"web": "x"},
            user="root",
            status=ReleaseStatus.SUCCEEDED,
        )
    assert [r.version for r in store.releases(app)] == [1, 2, 3]
    assert [r.version for r in store.releases(app, limit=2)] == [2, 3]
    assert store.release(app, "v2").config == {"N": "1"}
    assert store.release(app, "3").description == "Deploy 2"
    with pytest.raises(NotFound):
        store.release(app, "v9")


def test_settings_config_and_formation_persist(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    app = store.create_app("alpha")
    store.update_app("alpha", config={"A": "1\n2"}, settings=AppSettings(5, 7))
    store.set_formation(app, [FormationEntry("web", 2, "standard-1x")])
    store.set_formation(app, [FormationEntry("web", 3, "standard-2x")])
    store.close()
    store = Store(tmp_path / "state.db")
    app = store.app("alpha")
    assert app.config == {"A": "1\n2"}
    assert app.settings == AppSettings(5, 7)
    assert store.formation(app) == [FormationEntry("web", 3, "standard-2x")]
    store.close()


def test_unfinished_builds_and_releases_fail_on_restart(store: Store) -> None:
    app = store.create_app("alpha")
    store.create_build(app, description="", user="root")
    store.create_release(
        app,
        description="Deploy",
        slug_digest="abc",
        config={},
        process_types={},
        user="root",
        status=ReleaseStatus.PENDING,
    )
    assert store.fail_unfinished() == 2
    assert store.builds(app)[0].status.value == "failed"
    assert store.releases(app)[0].status is ReleaseStatus.FAILED


def test_slugs_kept_are_the_newest_per_app_the_current_and_running_builds(
    store: Store,
) -> None:
    alpha, beta = store.create_app("alpha"), store.create_app("beta")

    def release(app_name: str, digest: str | None) -> int:
        app = store.app(app_name)
        return store.create_release(
            app,
            description="x",
            slug_digest=digest,
            config={},
            process_types={},
            user="root",
            status=ReleaseStatus.SUCCEEDED,
        ).version

    for digest in ("a1", "a2", "a3", None, "a4"):
        release("alpha", digest)
    store.update_app("alpha", current_release=1)
    release("beta", "b1")
    building = store.create_build(beta, description="", user="root")
    store.finish_build(building, BuildStatus.PENDING, slug_digest="b2")
    done = store.create_build(beta, description="", user="root")
    store.finish_build(done, BuildStatus.FAILED, slug_digest="b3")

    # Newest two with a slug (a release without one counts for nothing), the
    # current one (a rollback target since), and the build that still runs.
    assert store.slugs_to_keep(2) == {"a4", "a3", "a1", "b1", "b2"}
    assert store.slugs_to_keep(0) == {"a1", "b2"}
    assert store.slugs_of({(alpha.id, 2), (beta.id, 1), (beta.id, 9)}) == {
        "a2",
        "b1",
    }
