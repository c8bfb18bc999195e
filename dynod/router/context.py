"""What every connection of one worker shares: table, pool, settings, log sink."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from dynod.router.logline import LogSender
from dynod.router.settings import RouterSettings
from dynod.router.table import EMPTY_TABLE, AppRoute, DynoRoute, RouteTable
from dynod.router.upstream import Key, UpstreamPool

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
        # The X-Forwarded-Proto and -Port lines of plain-HTTP requests; TLS
        # connections carry their own (see dynod.router.tls).
        self.port_line = b"X-Forwarded-Proto: http\r\nX-Forwarded-Port: %d\r\n" % port
        # Runs before routing; True when it answered the request itself.
        self.front: Callable[[Exchange], bool] | None = None
        self.connections: set[ProxyConnection] = set()
        self.draining = False
        self.loop = asyncio.get_running_loop()
        # Exchanges waiting for a first response byte -> when their request
        # went out.  The timeout is the same for all, so insertion order is
        # deadline order and one periodic look at the front replaces a timer
        # per request; an exchange leaves as soon as it hears back or ends, so
        # finished ones are not kept alive until their deadline.
        self._first_byte: dict[Exchange, float] = {}
        # App name -> its requests in flight in this worker (H11).
        self.in_flight: dict[str, int] = {}
        # Dyno address -> loop time until which it is avoided.
        self._quarantine: dict[tuple[str, int], float] = {}

    def swap_table(self, table: RouteTable) -> None:
        """Serve ``table`` from now on; pooled connections to dropped dynos go."""
        self.table = table
        live = {d.key for app in table.apps.values() for d in app.dynos}
        self.pool.retain(live)

    def pick(self, app: AppRoute, tried: AbstractSet[Key]) -> DynoRoute | None:
        """A random dyno of ``app`` neither tried nor quarantined, or None.

        Dynos are told apart by address, not name: during a rollout the old
        and the new ``web.1`` are both in the table, and are two dynos.
        """
        if not tried and not self._quarantine:
            dynos = app.dynos
            if len(dynos) == 1:
                return dynos[0]
            return random.choice(dynos) if dynos else None
        self._forget_expired(self.loop.time())
        quarantined = self._quarantine
        choices = [
            d for d in app.dynos if d.key not in tried and d.key not in quarantined
        ]
        return random.choice(choices) if choices else None

    def quarantine_ends(self, app: AppRoute, tried: AbstractSet[Key]) -> float | None:
        """When the first quarantined, untried dyno of ``app`` may be tried again."""
        ends = [
            self._quarantine[d.key]
            for d in app.dynos
            if d.key not in tried and d.key in self._quarantine
        ]
        return min(ends) if ends else None

    def watch_first_byte(self, ex: Exchange, sent_at: float) -> None:
        watched = self._first_byte
        # A resent request goes to the back, in deadline order again.
        watched.pop(ex, None)
        watched[ex] = sent_at

    def unwatch_first_byte(self, ex: Exchange) -> None:
        self._first_byte.pop(ex, None)

    def expire_first_byte(self) -> None:
        """Fail (H12) every exchange whose first-byte deadline has passed."""
        watched = self._first_byte
        oldest = self.loop.time() - self.settings.first_byte_timeout
        while watched:
            ex, sent_at = next(iter(watched.items()))
            if sent_at > oldest:
                break
            del watched[ex]
            ex.first_byte_overdue(sent_at)

    def quarantine(self, dyno: DynoRoute) -> None:
        self._quarantine[dyno.key] = self.loop.time() + self.settings.quarantine

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, until in self._quarantine.items() if until <= now]:
            del self._quarantine[key]
