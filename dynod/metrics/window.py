"""A sliding window of one-second buckets: counts, status classes, percentiles.

Each bucket holds the request count, counts per status class (``2xx`` ...) and
per H code, and a histogram of service times in whole milliseconds (a dict
from value to count: the router reports whole milliseconds, so the histogram
is exact and its size is bounded by the number of distinct values seen).
Percentiles are computed on demand by merging the buckets in the window, with
the nearest-rank method.  Buckets older than the longest window are dropped as
new seconds begin, so memory per app is bounded by ``span`` buckets.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dynod.metrics.lines import RouterSample

PERCENTILES = (50, 95, 99)


@dataclass(slots=True)
class _Bucket:
    second: int
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    service: Counter[int] = field(default_factory=Counter)


class SlidingWindow:
    def __init__(self, span: int = 300, clock: Callable[[], float] = time.time) -> None:
        self.span = span
        self.clock = clock
        self._buckets: deque[_Bucket] = deque()

    def add(self, sample: RouterSample) -> None:
        now = int(self.clock())
        buckets = self._buckets
        if not buckets or buckets[-1].second != now:
            buckets.append(_Bucket(now))
            self._expire(now)
        bucket = buckets[-1]
        bucket.requests += 1
        bucket.statuses[f"{sample.status // 100}xx"] += 1
        if sample.code is not None:
            bucket.codes[sample.code] += 1
        if sample.service_ms is not None:
            bucket.service[sample.service_ms] += 1

    def summary(self, window: int) -> dict[str, Any]:
        """Figures over the last ``window`` seconds (at most ``span``)."""
        window = max(1, min(window, self.span))
        now = int(self.clock())
        self._expire(now)
        since = now - window
        requests = 0
        statuses: Counter[str] = Counter()
        codes: Counter[str] = Counter()
        service: Counter[int] = Counter()
        for bucket in self._buckets:
            if bucket.second <= since:
                continue
            requests += bucket.requests
            statuses.update(bucket.statuses)
            codes.update(bucket.codes)
            service.update(bucket.service)
        return {
            "window_seconds": window,
            "requests": requests,
            "requests_per_second": round(requests / window, 3),
            "statuses": dict(sorted(statuses.items())),
            "errors": dict(sorted(codes.items())),
            "service_ms": percentiles(service),
        }

    def _expire(self, now: int) -> None:
        buckets = self._buckets
        while buckets and buckets[0].second <= now - self.span:
            buckets.popleft()


def percentiles(histogram: Counter[int]) -> dict[str, int | None]:
    """p50/p95/p99 of a value → count histogram (nearest rank)."""
    total = sum(histogram.values())
    out: dict[str, int | None] = {f"p{p}": None for p in PERCENTILES}
    if not total:
        return out
    ranks = {p: max(1, math.ceil(p / 100 * total)) for p in PERCENTILES}
    seen = 0
    pending = sorted(PERCENTILES)
    for value in sorted(histogram):
        seen += histogram[value]
        while pending and seen >= ranks[pending[0]]:
            out[f"p{pending.pop(0)}"] = value
        if not pending:
            break
    return out
