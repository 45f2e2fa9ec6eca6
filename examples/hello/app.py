"""The demo app: a standard-library web server that says hello on $PORT.

It knows nothing of slipway: it reads PORT like any Heroku app, logs each
request to stdout, and stops on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.time()


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        greeting = os.environ.get("GREETING", "Hello")
        up = time.time() - STARTED
        body = f"{greeting} from {os.environ.get('DYNO', 'hello')}, up {up:.1f}s\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Hello)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        print("stopping", flush=True)


if __name__ == "__main__":
    main()
