"""One sliding window per app, fed with every router line dynod receives."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dynod.metrics.lines import parse
from dynod.metrics.window import SlidingWindow

DEFAULT_WINDOW = 60


class Metrics:
    def __init__(self, span: int = 300, clock: Callable[[], float] = time.time) -> None:
        self.span = span
        self.clock = clock
        self._apps: dict[str, SlidingWindow] = {}

    def observe(self, app: str, line: str) -> None:
        """Count one router line for ``app``; other lines are ignored."""
        sample = parse(line)
        if sample is None:
            return
        window = self._apps.get(app)
        if window is None:
            window = self._apps[app] = SlidingWindow(self.span, self.clock)
        window.add(sample)

    def summary(self, app: str, window: int = DEFAULT_WINDOW) -> dict[str, Any]:
        """The app's figures over the last ``window`` seconds (zeros if none)."""
        found = self._apps.get(app)
        if found is None:
            found = SlidingWindow(self.span, self.clock)
        return {"app": app, **found.summary(window)}

    def forget(self, app: str) -> None:
        self._apps.pop(app, None)
