"""Instance names for test daemons and agents, and the record of those handed out.

Every kernel object a test makes carries a name from :func:`new_instance`
(``dt`` + 5 hex digits).  The session's leak check blames only names handed out
in this run, so test runs side by side on one machine never fail each other.
"""

from __future__ import annotations

import re
import secrets

TEST_INSTANCE_RE = re.compile(r"dt[0-9a-f]{5}")
ISSUED: set[str] = set()


def new_instance() -> str:
    """A fresh instance name for one test daemon or agent."""
    name = "dt" + secrets.token_hex(3)[:5]
    ISSUED.add(name)
    return name
