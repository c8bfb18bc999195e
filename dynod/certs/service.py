"""Which certificate serves which host; ACM orders, renewals and expiry warnings.

The service owns the certificate rows and the router's certificate directory.
After any change (upload, removal, a new ACME certificate, a domain added or
removed) it recomputes, for every host of every app, the certificate to serve:

- only certificates that cover the host (RFC 6125 wildcards) and have not
  expired are candidates;
- with ACM on, ACME certificates come first, else uploaded ones;
- among equals, the one that expires last.

ACM (automated certificate management) keeps one ACME certificate per app for
all its custom domains.  An order starts on ``certs:auto:enable``, on
``certs:auto:refresh``, when a domain is added or removed, and when the current
certificate is within :data:`RENEW_BEFORE` of expiry.  A failed order is retried
with exponential back-off; after ``max_attempts`` failures the domains are
``failed`` and orders stop until a refresh.  Domain statuses follow Heroku:

=============  ==================================================
``None``       waiting: ACM on, no order yet
``pending``    an order is in progress
``cert issued`` the certificate is served
``failing``    the last order failed; another is scheduled
``failed``     orders stopped; ``certs:auto:refresh`` starts again
=============  ==================================================

Every step is logged in the app's stream (``dynod[acm]``), and so are expiry
warnings for any certificate at :data:`WARN_DAYS` days before it expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from dynod.certs import pem
from dynod.certs.names import covers
from dynod.certs.publish import CertPublisher
from dynod.config import Config
from dynod.errors import DynodError
from dynod.state import certs as cert_rows
from dynod.state import domains as domain_rows
from dynod.state.certs import CertKind, CertRecord
from dynod.state.db import Store
from dynod.state.records import App

log = structlog.get_logger("dynod.certs")

DAY = 86400.0
RENEW_BEFORE = 30 * DAY
WARN_DAYS = (14, 7)
Progress = Callable[[str, str], None]
Emit = Callable[[str, str], None]  # (app id, message)


class Issuer(Protocol):
    def issue(self, names: list[str], progress: Progress) -> tuple[str, str]: ...


class CertService:
    def __init__(
        self,
        config: Config,
        store: Store,
        emit: Emit,
        publisher: CertPublisher,
        issuer: Issuer | None,
        *,
        clock: Callable[[], float] = time.time,
        retry_base: float = 60.0,
        retry_cap: float = 6 * 3600.0,
        max_attempts: int = 8,
        check_interval: float = 3600.0,
    ) -> None:
        self.config = config
        self.store = store
        self.emit = emit
        self.publisher = publisher
        self.issuer = issuer
        self.clock = clock
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.max_attempts = max_attempts
        self.check_interval = check_interval
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._orders: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    # -- life ------------------------------------------------------------------

    def prepare(self, default_dir: Path) -> None:
        """Write the default certificate and the current table for the router."""
        chain_file, key_file = default_dir / "default.crt", default_dir / "default.key"
        if not chain_file.exists() or not key_file.exists():
            domain = self.config.router_domain
            chain, key = pem.self_signed([f"*.{domain}", domain])
            default_dir.mkdir(parents=True, exist_ok=True)
            key_file.touch(mode=0o600)
            key_file.write_text(key)
            chain_file.write_text(chain)
        self.publisher.prepare(chain_file.read_text(), key_file.read_text())
        self.publish()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        tasks = [t for t in (self._task, *self._orders.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            try:
                self.check()
            except DynodError as exc:
                log.warning("certificate check failed", error=str(exc))
            await asyncio.sleep(self.check_interval)

    # -- serving ---------------------------------------------------------------

    def publish(self) -> bool:
        """Recompute host → certificate for every app and hand it to the router."""
        now = self.clock()
        custom = domain_rows.hosts_by_app(self.store)
        table: dict[str, tuple[str, str]] = {}
        for app in self.store.apps():
            acm = cert_rows.acm_enabled(self.store, app.id)
            rows = cert_rows.for_app(self.store, app.id)
            for host in [self.default_host(app), *custom.get(app.id, [])]:
                chosen = choose(rows, host, acm, now)
                if chosen is not None:
                    table[host] = (chosen.chain, chosen.key)
        return self.publisher.publish(table)

    def default_host(self, app: App) -> str:
        return f"{app.name}.{self.config.router_domain}"

    # -- uploaded certificates -------------------------------------------------

    def upload(self, app: App, chain: str, key: str) -> CertRecord:
        info = pem.inspect(chain, key, self.clock())
        record = cert_rows.add(
            self.store,
            app.id,
            CertKind.UPLOADED,
            chain,
            key,
            info.domains,
            info.not_before,
            info.not_after,
        )
        self.emit(
            app.id,
            f"Certificate {record.name} added for {', '.join(info.domains)}",
        )
        self.publish()
        return record

    def remove(self, app: App, ref: str) -> CertRecord:
        record = cert_rows.get(self.store, app.id, ref)
        cert_rows.remove(self.store, record.id)
        self.emit(app.id, f"Certificate {record.name} removed")
        self.publish()
        return record

    # -- ACM -------------------------------------------------------------------

    def enable_acm(self, app: App) -> None:
        cert_rows.set_acm(self.store, app.id, True)
        domain_rows.set_acm_status(self.store, app.id, None)
        self.emit(app.id, "Automatic certificate management enabled")
        self._failures.pop(app.id, None)
        self.schedule(app.id, 0.0)

    def disable_acm(self, app: App) -> None:
        cert_rows.set_acm(self.store, app.id, False)
        self._cancel(app.id)
        for record in cert_rows.for_app(self.store, app.id, CertKind.ACME):
            cert_rows.remove(self.store, record.id)
        domain_rows.set_acm_status(self.store, app.id, None)
        self.emit(app.id, "Automatic certificate management disabled")
        self.publish()

    def refresh_acm(self, app: App) -> None:
        self._failures.pop(app.id, None)
        self.emit(app.id, "Certificate refresh requested")
        self.schedule(app.id, 0.0)

    def domains_changed(self, app: App) -> None:
        """A domain was added or removed: serve it, and reissue under ACM."""
        self.publish()
        if cert_rows.acm_enabled(self.store, app.id):
            self._failures.pop(app.id, None)
            self.schedule(app.id, 0.0)

    def schedule(self, app_id: str, delay: float) -> None:
        """Start an order for the app after ``delay`` seconds (one at a time).

        Asked while an order runs (say a domain was added meanwhile), another
        order follows the running one.
        """
        running = self._orders.get(app_id)
        if running is not None and running is not asyncio.current_task():
            self._again.add(app_id)
            return
        old = self._timers.pop(app_id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(app_id, None)
            if app_id in self._orders:
                self._again.add(app_id)
                return
            task = loop.create_task(self._order(app_id))
            self._orders[app_id] = task
            task.add_done_callback(lambda t: self._order_done(app_id, t))

        self._timers[app_id] = loop.call_later(delay, fire)

    def _order_done(self, app_id: str, task: asyncio.Task[None]) -> None:
        if self._orders.get(app_id) is task:
            del self._orders[app_id]
        if app_id in self._again and not task.cancelled():
            self._again.discard(app_id)
            self.schedule(app_id, 0.0)

    def _cancel(self, app_id: str) -> None:
        self._again.discard(app_id)
        timer = self._timers.pop(app_id, None)
        if timer is not None:
            timer.cancel()
        task = self._orders.pop(app_id, None)
        if task is not None:
            task.cancel()

    async def _order(self, app_id: str) -> None:
        """One ACME order for all the app's custom domains."""
        if not cert_rows.acm_enabled(self.store, app_id):
            return
        names = [d.hostname for d in domain_rows.for_app(self.store, app_id)]
        names = [n for n in names if not n.startswith("*.")]
        if not names:
            self.emit(app_id, "No custom domains to get a certificate for yet")
            return
        if self.issuer is None:
            domain_rows.set_acm_status(
                self.store, app_id, "failed", "No ACME directory is configured."
            )
            return

        # Statuses and log lines as the order goes; progress comes from a thread.
        domain_rows.set_acm_status(self.store, app_id, "pending", None, names)
        self.emit(app_id, f"Ordering a certificate for {', '.join(names)}")
        loop = asyncio.get_running_loop()

        def progress(step: str, message: str) -> None:
            loop.call_soon_threadsafe(self.emit, app_id, message)

        try:
            chain, key = await asyncio.to_thread(self.issuer.issue, names, progress)
            info = pem.inspect(chain, key, self.clock())
        except DynodError as exc:
            self._order_failed(app_id, names, str(exc))
            return

        # Keep only the new ACME certificate, and serve it.
        old = cert_rows.for_app(self.store, app_id, CertKind.ACME)
        record = cert_rows.add(
            self.store,
            app_id,
            CertKind.ACME,
            chain,
            key,
            info.domains,
            info.not_before,
            info.not_after,
        )
        for stale in old:
            cert_rows.remove(self.store, stale.id)
        self._failures.pop(app_id, None)
        domain_rows.set_acm_status(self.store, app_id, "cert issued", None, names)
        self.publish()
        expires = time.strftime("%Y-%m-%d", time.gmtime(info.not_after))
        self.emit(app_id, f"Certificate {record.name} issued, expires {expires}")

    def _order_failed(self, app_id: str, names: list[str], reason: str) -> None:
        failures = self._failures.get(app_id, 0) + 1
        self._failures[app_id] = failures
        if failures >= self.max_attempts:
            domain_rows.set_acm_status(self.store, app_id, "failed", reason, names)
            self.emit(
                app_id,
                f"Certificate order failed {failures} times, giving up: {reason} "
                "Fix the cause, then run `dynoctl certs:auto:refresh`.",
            )
            return
        delay = min(self.retry_base * 2 ** (failures - 1), self.retry_cap)
        domain_rows.set_acm_status(self.store, app_id, "failing", reason, names)
        self.emit(
            app_id, f"Certificate order failed: {reason} Retrying in {delay:.0f}s."
        )
        self.schedule(app_id, delay)

    # -- the periodic look -----------------------------------------------------

    def check(self) -> None:
        """Start due renewals and log expiry warnings; called periodically."""
        now = self.clock()
        for app_id in cert_rows.acm_apps(self.store):
            if app_id in self._orders or app_id in self._timers:
                continue
            if self._failures.get(app_id, 0) >= self.max_attempts:
                continue
            if self._needs_order(app_id, now):
                self.schedule(app_id, 0.0)
        for record in cert_rows.every(self.store):
            self._warn_expiry(record, now)

    def _needs_order(self, app_id: str, now: float) -> bool:
        names = [
            d.hostname
            for d in domain_rows.for_app(self.store, app_id)
            if not d.hostname.startswith("*.")
        ]
        if not names:
            return False
        current = cert_rows.for_app(self.store, app_id, CertKind.ACME)
        for record in current:
            if record.not_after - now > RENEW_BEFORE and all(
                any(covers(d, n) for d in record.domains) for n in names
            ):
                return False
        return True

    def _warn_expiry(self, record: CertRecord, now: float) -> None:
        left = record.not_after - now
        due = [d for d in WARN_DAYS if left <= d * DAY]
        if not due or left <= 0:
            return
        threshold = min(due)
        if record.warned_days is not None and record.warned_days <= threshold:
            return
        cert_rows.set_warned(self.store, record.id, threshold)
        expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.not_after))
        what = (
            "renewal is failing; check `dynoctl certs:auto`"
            if record.kind is CertKind.ACME
            else "upload a renewed one with `dynoctl certs:add`"
        )
        self.emit(
            record.app_id,
            f"Warning: certificate {record.name} for {', '.join(record.domains)} "
            f"expires in {left / DAY:.0f} days ({expires}): {what}",
        )


def choose(
    rows: list[CertRecord], host: str, acm: bool, now: float
) -> CertRecord | None:
    """The certificate to serve for ``host`` among the app's ``rows``."""
    live = [
        r for r in rows if r.not_after > now and any(covers(d, host) for d in r.domains)
    ]
    if not live:
        return None
    preferred = CertKind.ACME if acm else CertKind.UPLOADED
    return max(live, key=lambda r: (r.kind is preferred, r.not_after))
