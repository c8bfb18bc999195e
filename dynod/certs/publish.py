"""The certificate directory the router workers load, written atomically.

Layout of ``<run_dir>/certs`` (mode 0700; files 0600, as they hold keys)::

    index.json       {"version": 3, "default": "default.pem",
                      "hosts": {"www.example.com": "9f2c....pem"}}
    default.pem      key + chain served when SNI names no known host
    9f2c....pem      key + chain, named by the SHA-256 of the content

Certificate files are content-addressed and never rewritten, so a worker that
reads an index always finds files matching it; the index is replaced by
rename, so it is whole or absent.  Files no index names any more are removed
after the new index is in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

DEFAULT_FILE = "default.pem"
INDEX_FILE = "index.json"


def cert_dir(run_dir: Path) -> Path:
    return run_dir / "certs"


class CertPublisher:
    def __init__(self, run_dir: Path) -> None:
        self.dir = cert_dir(run_dir)
        self.version = 0
        self._last: dict[str, str] | None = None

    def prepare(self, default_chain: str, default_key: str) -> None:
        """Make the directory and write the default certificate (before the router)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        _write_atomic(self.dir / DEFAULT_FILE, _bundle(default_chain, default_key))
        with contextlib.suppress(FileNotFoundError, ValueError, OSError):
            doc = json.loads((self.dir / INDEX_FILE).read_text())
            self.version = int(doc.get("version", 0))
        if not (self.dir / INDEX_FILE).exists():
            self.publish({})

    def publish(self, hosts: dict[str, tuple[str, str]]) -> bool:
        """Serve ``hosts`` (host → (chain PEM, key PEM)); False when unchanged."""
        # Each distinct certificate becomes one content-addressed file.
        files: dict[str, str] = {}
        wanted: dict[str, bytes] = {}
        for host, (chain, key) in sorted(hosts.items()):
            data = _bundle(chain, key)
            name = hashlib.sha256(data).hexdigest() + ".pem"
            wanted[name] = data
            files[host] = name
        if files == self._last and (self.dir / INDEX_FILE).exists():
            return False
        for name, data in wanted.items():
            if not (self.dir / name).exists():
                _write_atomic(self.dir / name, data)

        # The index switches every worker to the new set at once.
        self.version += 1
        index = {"version": self.version, "default": DEFAULT_FILE, "hosts": files}
        _write_atomic(self.dir / INDEX_FILE, json.dumps(index).encode())
        self._last = files

        # What no index names any more goes.
        keep = {DEFAULT_FILE, INDEX_FILE, *wanted}
        for entry in os.scandir(self.dir):
            if entry.name not in keep and entry.name.endswith(".pem"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        return True


def _bundle(chain: str, key: str) -> bytes:
    return (key.strip() + "\n" + chain.strip() + "\n").encode()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
