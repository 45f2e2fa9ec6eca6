"""The router's wake overhead: what a sleeping app costs its first request beyond its own boot.

For each of N cold starts, interleaved so machine noise hits both alike:

- direct: spawn the demo app the way LocalRuntime does (``sh -c`` from its
  Procfile, PORT set), connect to it in a tight loop (every 0.5 ms), send a
  GET and time the first response byte. This is the app's own spawn-to-ready.
- through slipway: ``slipway up`` (a separate process) with the app asleep;
  send the GET to the router and time its first response byte. The router
  holds it, the agent spawns the app, probes it ready, publishes the route,
  the router forwards the held request.

Printed: the median of each, and the overhead (median through slipway minus
median direct); the goal is under 20 ms. Peers: Knative's activator probes
every 200 ms, KEDA's HTTP interceptor retries every 50 ms.

Run: .venv/bin/python bench/wake.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"
GET = b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_byte(port: int, started: float, deadline: float) -> float:
    """Seconds from ``started`` to the first response byte of a GET on ``port``."""
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listening on {port}") from None
            time.sleep(0.0005)
            continue
        with sock:
            sock.sendall(GET)
            if not sock.recv(1):
                raise RuntimeError("connection closed without a response")
            elapsed = time.monotonic() - started
            while sock.recv(65536):  # read it all, so the app never writes to a closed socket
                pass
            return elapsed


def direct(command: str) -> float:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DYNO": "web.1"}
    started = time.monotonic()
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=HELLO,
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return first_byte(port, started, started + 30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def state(agent_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/v1/apps", timeout=5) as resp:
        return str(json.load(resp)["hello"]["state"])


def wait_state(agent_port: int, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if state(agent_port) == wanted:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"hello never became {wanted}")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    command = (HELLO / "Procfile").read_text().split(":", 1)[1].strip()
    port, ops, agent = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        apps = Path(tmp) / "apps.toml"
        apps.write_text(
            f'[apps.hello]\ndirectory = "{HELLO}"\nhosts = ["hello.localhost"]\n'
            'health_path = "/healthz"\n'
        )
        up = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "slipway"),
                "up",
                str(apps),
                f"--port={port}",
                f"--ops-port={ops}",
                f"--agent-port={agent}",
                "--idle-after=100ms",
                "--log-level=WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_state(agent, "asleep")
            directs: list[float] = []
            woken: list[float] = []
            for _ in range(args.runs):
                directs.append(direct(command))
                wait_state(agent, "asleep")
                started = time.monotonic()
                woken.append(first_byte(port, started, started + 30))
            wait_state(agent, "asleep")
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(30)
    print("direct ms :", " ".join(f"{x * 1000:.0f}" for x in directs))
    print("slipway ms:", " ".join(f"{x * 1000:.0f}" for x in woken))
    d, w = statistics.median(directs), statistics.median(woken)
    print(f"cold starts: {args.runs} (demo app: examples/hello, stdlib http.server)")
    print(f"direct spawn -> first byte    median {d * 1000:7.1f} ms")
    print(f"through slipway (asleep)      median {w * 1000:7.1f} ms")
    print(f"wake overhead                 {(w - d) * 1000:7.1f} ms   (goal < 20 ms)")
    paired = statistics.median(x - y for x, y in zip(woken, directs, strict=True))
    print(f"wake overhead, paired median  {paired * 1000:7.1f} ms")
    print(f"ratio slipway/direct          {w / d:7.2f}")


if __name__ == "__main__":
    main()
