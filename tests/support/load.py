"""Steady HTTP load through a daemon's router, counting every failed request.

:class:`LoadLoop` runs a few threads, each with one keep-alive connection to
the router, sending ``GET`` requests back to back with the app's ``Host``.  A
request fails when its status is not 2xx or when the socket errs (refused,
reset, closed before a full response, timeout); each failure is recorded with
its time and cause so a test can say exactly what went wrong.  After a socket
error the thread opens a new connection, as a browser would.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    # Responses per body, to see which dynos (and releases) answered.
    bodies: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class LoadLoop:
    """Back-to-back GETs on ``threads`` keep-alive connections until stopped."""

    def __init__(
        self,
        port: int,
        host: str,
        path: str = "/",
        threads: int = 4,
        timeout: float = 30.0,
    ) -> None:
        self.port = port
        self.host = host
        self.path = path
        self.timeout = timeout
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(threads)
        ]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._result = LoadResult()
        self._started = 0.0

    def __enter__(self) -> LoadLoop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        for t in self._threads:
            t.start()

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        self._result.seconds = time.monotonic() - self._started
        return self._result

    def snapshot(self) -> tuple[int, int]:
        """Requests and failures so far."""
        with self._lock:
            return self._result.requests, len(self._result.failures)

    def bodies(self) -> dict[str, int]:
        """Responses per body so far."""
        with self._lock:
            return dict(self._result.bodies)

    def _record(self, failure: str | None, body: str | None = None) -> None:
        with self._lock:
            self._result.requests += 1
            if failure is not None:
                stamp = time.monotonic() - self._started
                self._result.failures.append(f"{stamp:.3f}s {failure}")
            if body is not None:
                self._result.bodies[body] = self._result.bodies.get(body, 0) + 1

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
            try:
                conn.request("GET", self.path, headers={"Host": self.host})
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                self._record(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
                continue
            if 200 <= response.status < 300:
                self._record(None, body.split("\n", 1)[0])
            else:
                self._record(f"status {response.status}: {body[:200]!r}")
            if response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()
