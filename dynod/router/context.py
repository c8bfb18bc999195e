"""What every connection of one worker shares: table, pool, settings, log sink."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from typing import TYPE_CHECKING

from dynod.router.logline import LogSender
from dynod.router.settings import RouterSettings
from dynod.router.table import EMPTY_TABLE, AppRoute, DynoRoute, RouteTable
from dynod.router.upstream import UpstreamPool

if TYPE_CHECKING:
    from dynod.router.exchange import Exchange
    from dynod.router.proxy import ProxyConnection


class WorkerContext:
    """One worker's shared state; lives on the worker's event loop only."""

    def __init__(self, settings: RouterSettings, logs: LogSender, port: int) -> None:
        self.settings = settings
        self.logs = logs
        self.table: RouteTable = EMPTY_TABLE
        self.pool = UpstreamPool(settings.pool_size)
        self.port_line = b"X-Forwarded-Port: %d\r\n" % port
        self.connections: set[ProxyConnection] = set()
        self.draining = False
        self.loop = asyncio.get_running_loop()
        # (deadline, exchange, sent_at) in deadline order: the first-byte
        # timeout is the same for every request, so appending keeps the order
        # and one periodic look at the head replaces a timer per request.
        self._first_byte: deque[tuple[float, Exchange, float]] = deque()
        # Dyno address -> loop time until which it is avoided.
        self._quarantine: dict[tuple[str, int], float] = {}

    def swap_table(self, table: RouteTable) -> None:
        """Serve ``table`` from now on; pooled connections to dropped dynos go."""
        self.table = table
        live = {d.key for app in table.apps.values() for d in app.dynos}
        self.pool.retain(live)

    def pick(self, app: AppRoute, tried: set[str]) -> DynoRoute | None:
        """A random dyno of ``app`` not yet tried, preferring unquarantined ones."""
        if not tried and not self._quarantine:
            return random.choice(app.dynos) if app.dynos else None
        now = self.loop.time()
        self._forget_expired(now)
        fresh = [d for d in app.dynos if d.name not in tried]
        healthy = [d for d in fresh if d.key not in self._quarantine]
        choices = healthy or fresh
        return random.choice(choices) if choices else None

    def watch_first_byte(self, ex: Exchange, sent_at: float) -> None:
        deadline = sent_at + self.settings.first_byte_timeout
        self._first_byte.append((deadline, ex, sent_at))

    def expire_first_byte(self) -> None:
        """Fail (H12) every exchange whose first-byte deadline has passed."""
        watched = self._first_byte
        now = self.loop.time()
        while watched and watched[0][0] <= now:
            _, ex, sent_at = watched.popleft()
            ex.first_byte_overdue(sent_at)

    def quarantine(self, dyno: DynoRoute) -> None:
        self._quarantine[dyno.key] = self.loop.time() + self.settings.quarantine

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, until in self._quarantine.items() if until <= now]:
            del self._quarantine[key]
