"""The demo app: a standard-library web server that says hello on $PORT.

It knows nothing of slipway: it reads PORT like any Heroku app, logs each
request to stdout, and stops on SIGTERM.
"""

from __future__ import annotations

import time

# The machine's monotonic clock when the app's code started (before its imports) and when
# it began listening, sent as headers so bench/wake.py can tell the app's own boot from
# what slipway adds to a wake.
STARTED_AT = time.monotonic()

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

STARTED = time.time()


class Server(ThreadingHTTPServer):
    # The default listen backlog of 5 makes a burst of first requests wait for SYN retries.
    request_queue_size = 1024
    daemon_threads = True
    ready_at = 0.0


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":  # slipway's readiness probe (health_path in apps.toml)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        greeting = os.environ.get("GREETING", "Hello")
        up = time.time() - STARTED
        body = f"{greeting} from {os.environ.get('DYNO', 'hello')}, up {up:.1f}s\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Started-At", f"{STARTED_AT:.6f}")
        self.send_header("X-Ready-At", f"{getattr(self.server, 'ready_at', 0.0):.6f}")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        if self.path == "/healthz":
            return
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "5000"))
    # Before listening: once it listens it is ready, and may be stopped at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = Server(("127.0.0.1", port), Hello)
    server.ready_at = time.monotonic()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        print("stopping", flush=True)


if __name__ == "__main__":
    main()
