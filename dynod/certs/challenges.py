"""HTTP-01 challenge tokens, published for the router to answer.

RFC 8555 §8.3: the CA fetches ``http://DOMAIN/.well-known/acme-challenge/TOKEN``
on port 80 and expects the key authorization as the body.  dynod writes one
file per token under ``<run_dir>/acme-challenge/``; the router serves a file by
its name on plain HTTP, for any host, before routing to an app.  Tokens are
unguessable, so answering them on every host reveals nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PATH_PREFIX = "/.well-known/acme-challenge/"
# RFC 8555 §8.3: a token is base64url without padding.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def challenge_dir(run_dir: Path) -> Path:
    return run_dir / "acme-challenge"


class ChallengeTokens:
    def __init__(self, run_dir: Path) -> None:
        self.dir = challenge_dir(run_dir)

    def publish(self, token: str, key_authorization: str) -> None:
        if not TOKEN_RE.match(token):
            raise ValueError(f"ACME token {token!r} is not base64url")
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{token}.tmp"
        tmp.write_text(key_authorization)
        os.replace(tmp, self.dir / token)

    def withdraw(self, token: str) -> None:
        if TOKEN_RE.match(token):
            (self.dir / token).unlink(missing_ok=True)
