"""Router lines to per-app figures: parsing, percentiles, the sliding window."""

from __future__ import annotations

from collections import Counter

from dynod.metrics.lines import parse
from dynod.metrics.registry import Metrics
from dynod.metrics.window import percentiles
from dynod.router.hcodes import HCODES
from dynod.router.logline import format_line


def _line(status: int, service: int | None, code: str | None = None) -> str:
    return format_line(
        method="GET", path='/x" status=200 service=1ms ', host="a.localhost",
        request_id="r", fwd="1.2.3.4", dyno="web.1", connect_ms=0,
        service_ms=service, status=status, nbytes=10,
        code=HCODES[code] if code else None,
    )  # fmt: skip


def test_metrics_parse_reads_the_real_fields_not_the_path() -> None:
    sample = parse(_line(503, None, "H12"))
    assert sample is not None
    assert (sample.status, sample.service_ms, sample.code) == (503, None, "H12")
    sample = parse(_line(200, 17))
    assert sample is not None
    assert (sample.status, sample.service_ms, sample.code) == (200, 17, None)
    assert parse("State changed from up to down") is None


def test_metrics_percentiles_nearest_rank() -> None:
    hist = Counter(range(1, 101))
    assert percentiles(hist) == {"p50": 50, "p95": 95, "p99": 99}
    assert percentiles(Counter({7: 3})) == {"p50": 7, "p95": 7, "p99": 7}
    assert percentiles(Counter()) == {"p50": None, "p95": None, "p99": None}


def test_metrics_window_slides() -> None:
    now = [1000.0]
    metrics = Metrics(span=300, clock=lambda: now[0])
    for ms in range(1, 11):
        metrics.observe("a", _line(200, ms))
    now[0] += 30
    metrics.observe("a", _line(503, None, "H80"))
    metrics.observe("a", _line(404, 500))
    summary = metrics.summary("a", 60)
    assert summary["requests"] == 12
    assert summary["statuses"] == {"2xx": 10, "4xx": 1, "5xx": 1}
    assert summary["errors"] == {"H80": 1}
    assert summary["service_ms"] == {"p50": 6, "p95": 500, "p99": 500}
    # Only the last 10 s: the early requests are outside.
    assert metrics.summary("a", 10)["requests"] == 2
    # Past the span everything is gone; unknown apps are zeros.
    now[0] += 400
    assert metrics.summary("a", 300)["requests"] == 0
    assert metrics.summary("nobody")["service_ms"]["p50"] is None
