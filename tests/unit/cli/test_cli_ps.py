"""ps, ps:scale, ps:type, ps:restart and ps:stop."""

from __future__ import annotations

import json
from typing import Any

from cli_fakeapi import Dynoctl, FakeApi

FORMATION = [
    {"type": "web", "quantity": 2, "size": "standard-1x", "command": "python3 app.py"},
    {"type": "worker", "quantity": 1, "size": "standard-2x", "command": "rq worker"},
]


def dyno(name: str, state: str = "up", **extra: Any) -> dict[str, Any]:
    dtype = name.split(".")[0]
    base = {
        "id": f"id-{name}",
        "name": name,
        "type": dtype,
        "state": state,
        "command": {"web": "python3 app.py", "run": "bash"}.get(dtype, "rq worker"),
        "size": "standard-2x" if dtype == "worker" else "standard-1x",
        "release": {"version": 3},
        "host": "node-a",
        "created_at": "2026-12-03T18:00:00+00:00",
        "updated_at": "2026-12-03T18:12:23+00:00",
        "memory_bytes": 42 * 1024 * 1024,
    }
    return base | extra


def test_ps_groups_by_type_like_heroku(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply(
        "GET",
        "/apps/hello/dynos",
        [
            dyno("worker.1", "crashed", memory_bytes=None),
            dyno("web.10"),
            dyno("run.4821"),
            dyno("web.2", "starting", release={"version": 12}),
        ],
    )
    result = dynoctl("ps")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "=== web (standard-1x): python3 app.py (2)"
    # Numbers sort numerically; columns after Heroku's own shape line up.
    assert lines[1].startswith("web.2: starting 2026/12/03 18:12:23 +0000 (~ ")
    assert lines[2].startswith("web.10: up 2026/12/03 18:12:23 +0000 (~ ")
    assert lines[1].index("v12") == lines[2].index("v3")
    assert lines[1].endswith("v12  42 MB  node-a")
    assert lines[3:5] == ["", "=== worker (standard-2x): rq worker (1)"]
    assert lines[5].startswith("worker.1: crashed 2026/12/03 18:12:23 +0000")
    # An unknown memory figure leaves its column empty.
    assert lines[5].endswith(")  v3    node-a")
    assert lines[7] == "=== run: one-off processes (1)"
    assert lines[8].startswith("run.4821 (standard-1x): up 2026/12/03")
    assert lines[8].endswith("node-a  bash")


def test_ps_empty_and_json(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/dynos", [])
    empty = dynoctl("ps")
    assert (empty.exit_code, empty.stdout) == (0, "")
    assert "No dynos on ⬢ hello" in empty.stderr
    assert json.loads(dynoctl("ps", "--json").stdout) == []


def test_scale_absolute_sends_updates(fake: FakeApi, dynoctl: Dynoctl) -> None:
    result_formation = [
        dict(FORMATION[0], quantity=3),
        dict(FORMATION[1], quantity=1, size="standard-2x"),
    ]
    fake.reply("PATCH", "/apps/hello/formation", result_formation)
    result = dynoctl("ps:scale", "web=3", "worker=1:Standard-2X")
    assert result.exit_code == 0, result.output
    assert result.stderr == "Scaling dynos on ⬢ hello... done\n"
    assert result.stdout == (
        "Now running web at 3:standard-1x, worker at 1:standard-2x.\n"
    )
    # No formation read is needed for absolute quantities.
    assert [(r.method, r.path) for r in fake.sent()] == [
        ("PATCH", "/apps/hello/formation")
    ]
    assert fake.sent()[0].json() == {
        "updates": [
            {"type": "web", "quantity": 3},
            {"type": "worker", "quantity": 1, "size": "standard-2x"},
        ]
    }


def test_scale_relative_reads_formation_first(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/formation", FORMATION)
    fake.reply("PATCH", "/apps/hello/formation", FORMATION)
    result = dynoctl("ps:scale", "web+1", "worker-1")
    assert result.exit_code == 0, result.output
    assert fake.sent("PATCH")[0].json() == {
        "updates": [{"type": "web", "quantity": 3}, {"type": "worker", "quantity": 0}]
    }


def test_scale_relative_below_zero_fails(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/formation", FORMATION)
    result = dynoctl("ps:scale", "worker-2")
    assert result.exit_code == 1
    assert "would leave -1 dynos" in result.stderr
    assert fake.sent("PATCH") == []


def test_scale_bad_argument_is_usage_error(fake: FakeApi, dynoctl: Dynoctl) -> None:
    result = dynoctl("ps:scale", "web=3", "worker=lots")
    assert result.exit_code == 2
    assert "'worker=lots' is not a scale" in result.stderr
    assert fake.sent() == []


def test_scale_refused_by_server(fake: FakeApi, dynoctl: Dynoctl) -> None:
    message = "Size 'huge' is unknown; use one of eco, basic, standard-1x."
    fake.fail("PATCH", "/apps/hello/formation", 422, "invalid_params", message)
    result = dynoctl("ps:scale", "web=1:huge")
    assert result.exit_code == 1
    assert result.stderr.endswith(f" !    {message}\n")


def test_scale_without_arguments_shows_formation(
    fake: FakeApi, dynoctl: Dynoctl
) -> None:
    fake.reply("GET", "/apps/hello/formation", FORMATION)
    result = dynoctl("ps:scale")
    assert result.stdout == "web=2:standard-1x worker=1:standard-2x\n"
    assert json.loads(dynoctl("ps:scale", "--json").stdout) == FORMATION


def test_type_sets_sizes_and_prints_table(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("PATCH", "/apps/hello/formation", FORMATION)
    result = dynoctl("ps:type", "web=standard-1x", "worker=standard-2x")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "Type    Size         Qty",
        "──────  ───────────  ───",
        "web     standard-1x  2",
        "worker  standard-2x  1",
    ]
    assert fake.sent()[0].json() == {
        "updates": [
            {"type": "web", "size": "standard-1x"},
            {"type": "worker", "size": "standard-2x"},
        ]
    }
    assert dynoctl("ps:type", "web").exit_code == 2


def test_restart_all_type_and_dyno(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("DELETE", "/apps/hello/dynos", None, 202)
    fake.reply("DELETE", "/apps/hello/dynos/web", None, 202)
    fake.reply("DELETE", "/apps/hello/dynos/web.2", None, 202)
    assert dynoctl("ps:restart").stderr == "Restarting all dynos on ⬢ hello... done\n"
    assert dynoctl("ps:restart", "web").stderr == (
        "Restarting web dynos on ⬢ hello... done\n"
    )
    assert dynoctl("ps:restart", "web.2").stderr == (
        "Restarting web.2 dyno on ⬢ hello... done\n"
    )
    assert [r.path for r in fake.sent("DELETE")] == [
        "/apps/hello/dynos",
        "/apps/hello/dynos/web",
        "/apps/hello/dynos/web.2",
    ]


def test_stop(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("POST", "/apps/hello/dynos/run.4821/actions/stop", None, 202)
    result = dynoctl("ps:stop", "run.4821")
    assert result.exit_code == 0
    assert fake.sent()[0].path == "/apps/hello/dynos/run.4821/actions/stop"
    missing = dynoctl("ps:stop")
    assert missing.exit_code == 2
    fake.fail(
        "POST",
        "/apps/hello/dynos/web.9/actions/stop",
        404,
        "not_found",
        "No dyno web.9.",
    )
    gone = dynoctl("ps:stop", "web.9")
    assert gone.exit_code == 1
    assert gone.stderr.endswith(" !    No dyno web.9.\n")
