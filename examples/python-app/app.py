"""A small web app for dynod, using only the standard library.

Routes:
  /           "Hello from <DYNO> of <app> (release v<N>)", plus $GREETING if set
  /env/<KEY>  the value of one config var (404 if unset)
  /whoami     JSON: uid, hostname, and the pids visible in /proc
  /sleep/<S>  answers after S seconds (at most 60), like a slow request
"""

from __future__ import annotations

import json
import os
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def release_version() -> str:
    raw = os.environ.get("DYNOD_RELEASE_VERSION") or os.environ.get(
        "HEROKU_RELEASE_VERSION", "0"
    )
    return raw.removeprefix("v")


class Handler(BaseHTTPRequestHandler):
    def send_text(self, status: int, body: str, kind: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/":
            dyno = os.environ.get("DYNO", "?")
            app = os.environ.get("DYNOD_APP_NAME", "?")
            body = f"Hello from {dyno} of {app} (release v{release_version()})\n"
            if greeting := os.environ.get("GREETING"):
                body += greeting + "\n"
            self.send_text(200, body)
        elif self.path.startswith("/env/"):
            value = os.environ.get(self.path.removeprefix("/env/"))
            if value is None:
                self.send_text(404, "not set\n")
            else:
                self.send_text(200, value)
        elif self.path.startswith("/sleep/"):
            try:
                seconds = min(float(self.path.removeprefix("/sleep/")), 60.0)
            except ValueError:
                self.send_text(400, "use /sleep/SECONDS\n")
                return
            time.sleep(seconds)
            dyno = os.environ.get("DYNO", "?")
            self.send_text(
                200, f"Slept {seconds:g}s on {dyno} (release v{release_version()})\n"
            )
        elif self.path == "/whoami":
            pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            info = {"uid": os.getuid(), "hostname": socket.gethostname(), "pids": pids}
            self.send_text(200, json.dumps(info) + "\n", "application/json")
        else:
            self.send_text(404, "no such page\n")

    def log_message(self, format: str, *args: object) -> None:
        # One line per request on stdout, where dynod's log router reads it.
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}")


class Server(ThreadingHTTPServer):
    # socketserver's default accept queue of 5 drops connections under a
    # burst; the kernel then sends the SYN again only after a second.
    request_queue_size = 128

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a DNS query that can
        # stall start-up for the resolver's whole timeout; the name is unused.
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()[:2]
        self.server_name, self.server_port = "localhost", self.server_address[1]


def main() -> None:
    port = int(os.environ.get("PORT", "5000"))
    server = Server(("0.0.0.0", port), Handler)
    print(f"Listening on 0.0.0.0:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
