"""A small HTTP/1.1 app server that the router tests route to.

Run as ``python router_backend.py PORT NAME TAG``; TAG is the test's instance
name, so a backend left running shows up in the session's leak check.

Paths:
  /echo, anything else  200 JSON: backend name, method, path, headers, body
                        length and the client port (which upstream connection)
  /stream?n=N&gap=S     N chunks of a chunked response, S seconds apart
  /slow?s=S             waits S seconds, then answers like /echo
  /close                closes the connection without answering
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_name_tag = "?"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _read_body(self) -> tuple[int, str]:
        """Read the whole request body; returns its length and SHA-256."""
        digest = hashlib.sha256()
        total = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data = self.rfile.read(size)
                digest.update(data)
                total += len(data)
                self.rfile.readline()
            return total, digest.hexdigest()
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            data = self.rfile.read(min(left, 65536))
            if not data:
                break
            digest.update(data)
            total += len(data)
            left -= len(data)
        return total, digest.hexdigest()

    def _answer(self, body_len: int, sha: str) -> None:
        url = urlsplit(self.path)
        doc = {
            "backend": self.server_name_tag,
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": body_len,
            "body_sha": sha,
            "peer_port": self.client_address[1],
            "query": parse_qs(url.query),
        }
        data = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("X-Backend", self.server_name_tag)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body_len, sha = self._read_body()
        if url.path == "/close":
            self.close_connection = True
            self.connection.close()
            return
        if url.path == "/slow":
            time.sleep(float(query.get("s", ["1"])[0]))
        if url.path == "/stream":
            n = int(query.get("n", ["3"])[0])
            gap = float(query.get("gap", ["0.2"])[0])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                chunk = f"chunk {i} at {time.time():.3f}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(gap)
            self.wfile.write(b"0\r\n\r\n")
            return
        self._answer(body_len, sha)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    Handler.server_name_tag = name
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
