"""A process that holds memory, for the dyno monitor's tests: ``python hog.py``.

It prints ``allocating``, allocates and writes HOG_MB megabytes (so they are
resident), then prints ``holding rss_kb=N`` with its resident size as it reads it
itself from /proc/self/statm (getrusage's peak would do, but Linux carries it over
exec from the vforked parent: slipway's own), and stays: serving HTTP on $PORT
when it has one (a web process), sleeping otherwise.
"""

from __future__ import annotations

import os
import resource
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    print("allocating", flush=True)
    held = b"x" * (int(os.environ.get("HOG_MB", "0")) * 1024 * 1024)
    with open("/proc/self/statm") as statm:
        resident = int(statm.read().split()[1]) * resource.getpagesize() // 1024
    print(f"holding rss_kb={resident} bytes={len(held)}", flush=True)
    port = os.environ.get("PORT")
    if port:
        HTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
