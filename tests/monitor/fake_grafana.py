"""Stands in for grafana-server, which cannot be installed here, in tests of how
monitor/localstack.py runs it.

It listens where Grafana's environment tells Grafana to (GF_SERVER_PROTOCOL=socket: on
GF_SERVER_SOCKET with GF_SERVER_SOCKET_MODE; otherwise on GF_SERVER_HTTP_ADDR and
GF_SERVER_HTTP_PORT), answers GET /api/health with 200 and every other GET with 200 "ok",
and appends JSON lines to $FAKE_GRAFANA_RECORD: first {"env": ...}, then {"path", "headers"}
for each request.
"""

from __future__ import annotations

import json
import os
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECORD = os.environ["FAKE_GRAFANA_RECORD"]
_lock = threading.Lock()


def record(entry: dict) -> None:
    with _lock, open(RECORD, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/api/health":
            record({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main() -> None:
    env = dict(os.environ)
    record({"env": env, "argv": sys.argv[1:]})
    if env.get("GF_SERVER_PROTOCOL") == "socket":
        path = env["GF_SERVER_SOCKET"]
        server = UnixServer(path, Handler)
        os.chmod(path, int(env.get("GF_SERVER_SOCKET_MODE", "0660"), 8))
    else:
        address = (env.get("GF_SERVER_HTTP_ADDR", ""), int(env.get("GF_SERVER_HTTP_PORT", "3000")))
        server = ThreadingHTTPServer(address, Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
