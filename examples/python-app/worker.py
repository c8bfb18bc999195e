"""A background worker for dynod: prints a line every 5 seconds."""

from __future__ import annotations

import os
import time

n = 0
while True:
    n += 1
    print(f"{os.environ.get('DYNO', 'worker')} tick {n}", flush=True)
    time.sleep(5)
