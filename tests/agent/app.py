"""A real app process for agent tests, run from a Procfile: ``web: python app.py``.

Its behaviour comes from the environment (as config vars would set it):
MODE=ok (default) | crash (exit 1 at once) | never (never listens) | stubborn (ignores
SIGTERM); HEALTHY_IF a path: /health answers 503 until it exists;
BOOT_DELAY seconds before listening; FIXED_IF a path: when it exists, MODE is ok.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    # The default backlog of 5 makes a burst of connects wait for SYN retries (1 s+).
    request_queue_size = 1024
    daemon_threads = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        healthy = os.environ.get("HEALTHY_IF")
        if self.path == "/health" and healthy and not os.path.exists(healthy):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/slow"):
            time.sleep(float(self.path.rsplit("=", 1)[-1]) if "=" in self.path else 1.0)
        greeting = f" greeting={os.environ['GREETING']}" if "GREETING" in os.environ else ""
        body = f"hello from {os.environ.get('DYNO')} pid {os.getpid()}{greeting}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    mode = os.environ.get("MODE", "ok")
    fixed = os.environ.get("FIXED_IF")
    if fixed and os.path.exists(fixed):
        mode = "ok"
    print(f"booting in mode {mode}", flush=True)
    if mode == "crash":
        print("boom: cannot connect to the database", file=sys.stderr, flush=True)
        sys.exit(1)
    if mode == "never":
        time.sleep(3600)
    time.sleep(float(os.environ.get("BOOT_DELAY", "0")))
    # Handlers before listening: once it listens it is ready, and may be stopped at once.
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = Server(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
