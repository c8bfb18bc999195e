"""The certificate service: choice per host, ACM orders, back-off, expiry warnings."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dynod.certs.pem import self_signed
from dynod.certs.publish import CertPublisher
from dynod.certs.service import DAY, CertService, Progress, choose
from dynod.config import Config
from dynod.errors import AcmeFailed
from dynod.state import certs as cert_rows
from dynod.state import domains as domain_rows
from dynod.state.certs import CertKind, CertRecord
from dynod.state.db import Store


class FakeIssuer:
    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.orders: list[list[str]] = []

    def issue(self, names: list[str], progress: Progress) -> tuple[str, str]:
        self.orders.append(names)
        progress("pending", "order placed")
        if len(self.orders) <= self.fail:
            raise AcmeFailed("The CA said no.")
        return self_signed(names, days=90)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _service(
    tmp_path: Path, issuer: FakeIssuer, clock: Clock | None = None
) -> tuple[CertService, Store, list[tuple[str, str]]]:
    store = Store(tmp_path / "db.sqlite")
    lines: list[tuple[str, str]] = []
    svc = CertService(
        Config(state_dir=tmp_path, run_dir=tmp_path / "run"),
        store,
        lambda app_id, msg: lines.append((app_id, msg)),
        CertPublisher(tmp_path / "run"),
        issuer,
        clock=clock or Clock(),
        retry_base=0.01,
        max_attempts=3,
    )
    return svc, store, lines


def _record(kind: CertKind, domains: tuple[str, ...], not_after: float) -> CertRecord:
    return CertRecord("id-" + kind, "app", kind, kind, "", "", domains, 0, not_after)


def test_certs_choose_prefers_acm_when_on_then_the_longest_lived() -> None:
    up = _record(CertKind.UPLOADED, ("*.x.test",), 100)
    ac = _record(CertKind.ACME, ("www.x.test",), 50)
    assert choose([up, ac], "www.x.test", True, 10) is ac
    assert choose([up, ac], "www.x.test", False, 10) is up
    assert choose([up, ac], "www.x.test", True, 60) is up  # ACME one expired
    assert choose([up, ac], "other.test", True, 10) is None


async def test_certs_acm_orders_for_custom_domains_and_serves(tmp_path: Path) -> None:
    issuer = FakeIssuer()
    svc, store, lines = _service(tmp_path, issuer)
    svc.prepare(tmp_path / "default")
    app = store.create_app("shop")
    domain_rows.add(store, app.id, "www.shop.test")
    svc.enable_acm(app)
    for _ in range(100):
        if cert_rows.for_app(store, app.id):
            break
        await asyncio.sleep(0.01)
    assert issuer.orders == [["www.shop.test"]]
    assert [d.acm_status for d in domain_rows.for_app(store, app.id)] == ["cert issued"]
    index = (svc.publisher.dir / "index.json").read_text()
    assert "www.shop.test" in index
    assert any("order placed" in m for _, m in lines)
    await svc.close()


async def test_certs_acm_backs_off_then_gives_up(tmp_path: Path) -> None:
    issuer = FakeIssuer(fail=99)
    svc, store, lines = _service(tmp_path, issuer)
    svc.prepare(tmp_path / "default")
    app = store.create_app("shop")
    domain_rows.add(store, app.id, "www.shop.test")
    svc.enable_acm(app)
    for _ in range(200):
        if domain_rows.for_app(store, app.id)[0].acm_status == "failed":
            break
        await asyncio.sleep(0.01)
    domain = domain_rows.for_app(store, app.id)[0]
    assert domain.acm_status == "failed"
    assert domain.acm_status_reason == "The CA said no."
    assert len(issuer.orders) == 3
    messages = [m for _, m in lines]
    assert any("Retrying in 0s" in m for m in messages)
    assert any("giving up" in m for m in messages)
    # A refresh starts again.
    issuer.fail = 0
    svc.refresh_acm(app)
    for _ in range(100):
        if domain_rows.for_app(store, app.id)[0].acm_status == "cert issued":
            break
        await asyncio.sleep(0.01)
    assert domain_rows.for_app(store, app.id)[0].acm_status == "cert issued"
    await svc.close()


@pytest.mark.parametrize("days_left", [20, 13, 6])
async def test_certs_expiry_warnings_at_14_and_7_days(
    tmp_path: Path, days_left: int
) -> None:
    clock = Clock()
    svc, store, lines = _service(tmp_path, FakeIssuer(), clock)
    app = store.create_app("shop")
    cert_rows.add(
        store, app.id, CertKind.UPLOADED, "x", "k", ("a.test",), 0,
        clock.now + days_left * DAY,
    )  # fmt: skip
    svc.check()
    svc.check()  # a second look repeats nothing
    warnings = [m for _, m in lines if m.startswith("Warning")]
    expected = {20: 0, 13: 1, 6: 1}[days_left]
    assert len(warnings) == expected
    if expected:
        assert f"expires in {days_left} days" in warnings[0]
        assert "certs:add" in warnings[0]

    # Time passes: the 7-day warning follows the 14-day one, once.
    clock.now += (days_left - 6.5) * DAY
    svc.check()
    svc.check()
    later = [m for _, m in lines if m.startswith("Warning")]
    assert len(later) == (1 if days_left == 20 else 2 if days_left == 13 else 1)
    await svc.close()


async def test_certs_renewal_is_due_30_days_before_expiry(tmp_path: Path) -> None:
    clock = Clock()
    issuer = FakeIssuer()
    svc, store, _ = _service(tmp_path, issuer, clock)
    app = store.create_app("shop")
    domain_rows.add(store, app.id, "www.shop.test")
    cert_rows.set_acm(store, app.id, True)
    cert_rows.add(
        store, app.id, CertKind.ACME, "x", "k", ("www.shop.test",), 0,
        clock.now + 31 * DAY,
    )  # fmt: skip
    svc.check()
    await asyncio.sleep(0.05)
    assert issuer.orders == []
    clock.now += 2 * DAY
    svc.check()
    for _ in range(100):
        if issuer.orders:
            break
        await asyncio.sleep(0.01)
    assert issuer.orders == [["www.shop.test"]]
    await svc.close()
