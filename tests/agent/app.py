"""A real app process for agent tests, run from a Procfile: ``web: python app.py``.

Its behaviour comes from the environment (as config vars would set it):
MODE=ok (default) | crash (exit 1 at once) | never (never listens);
BOOT_DELAY seconds before listening; FIXED_IF a path: when it exists, MODE is ok.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(float(self.path.rsplit("=", 1)[-1]) if "=" in self.path else 1.0)
        body = f"hello from {os.environ.get('DYNO')} pid {os.getpid()}\n".encode()
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
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
