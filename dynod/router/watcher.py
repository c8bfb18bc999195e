"""Notices a new ``routes.json`` and hands the parsed table over, whole.

dynod replaces the file by rename, so every new table is a new inode; a stat
every ``table_poll`` seconds (50 ms by default) is cheap and catches it.  A
table that fails to parse is logged once and ignored: the worker keeps serving
with the last good one.  A missing file also keeps the last table, because
dynod being away must not take apps offline.

After each swap the worker acknowledges the version it now serves by writing it
to ``<run_dir>/router-acks/<worker pid>`` (temp file + rename), so dynod can
wait until every live worker has stopped sending new requests to a dyno before
it stops that dyno.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import structlog

from dynod.router.table import RouteTable, RouteTableError, parse_table

log = structlog.get_logger("dynod.router")

_FileKey = tuple[int, int, int, int]
ACKS_DIR = "router-acks"


class TableWatcher:
    """Polls ``path`` and calls ``on_table`` with each new valid table."""

    def __init__(
        self,
        path: Path,
        on_table: Callable[[RouteTable], None],
        interval: float,
    ) -> None:
        self._path = path
        self._on_table = on_table
        self._interval = interval
        self._seen: _FileKey | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Load the current file (if any) now, then poll from the running loop."""
        self.check()
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def check(self) -> bool:
        """Look at the file once; True when a new table was handed over."""
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return False
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return False
        # Remember the file even when it is bad, so it is reported only once.
        self._seen = key
        try:
            table = parse_table(self._path.read_bytes())
        except (OSError, RouteTableError) as exc:
            log.warning("route table ignored", path=str(self._path), error=str(exc))
            return False
        for reason in table.rejected:
            log.warning("route table entry dropped", reason=reason)
        self._on_table(table)
        self._acknowledge(table.version)
        return True

    def _acknowledge(self, version: int) -> None:
        acks = self._path.parent / ACKS_DIR
        try:
            acks.mkdir(exist_ok=True)
            tmp = acks / f".{os.getpid()}.tmp"
            tmp.write_text(str(version))
            os.replace(tmp, acks / str(os.getpid()))
        except OSError as exc:
            log.warning("route table ack failed", error=str(exc))

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._interval, self._tick)

    def _tick(self) -> None:
        try:
            self.check()
        finally:
            self._schedule()
