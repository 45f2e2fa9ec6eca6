"""The router's wake overhead: what a sleeping app costs its first request beyond its own boot.

For each of N cold starts, interleaved so machine noise hits both alike:

- direct: spawn the demo app the way LocalRuntime does (``sh -c`` from its
  Procfile, PORT set), connect to it in a tight loop (every 0.5 ms), send a
  GET and time the first response byte. This is the app's own spawn-to-ready.
- through slipway: ``slipway up`` (a separate process) with the app asleep;
  send the GET to the router and time its first response byte. The router
  holds it, the agent spawns the app, probes it ready, publishes the route,
  the router forwards the held request.

The demo app sends, as headers, the monotonic clock (one clock for the whole
machine) when its Python started and when it began listening. So each
cold start splits into: before the app runs (slipway: hold, wake, spawn;
direct: spawn), the app's own boot, and after it listens (slipway: probe,
publish, forward; direct: the client's next poll). The wake overhead is
what slipway adds in the first and last parts, medians over the runs, so a
noisy machine's slow boots do not drown it; the goal is under 20 ms.
Peers: Knative's activator probes every 200 ms, KEDA's HTTP interceptor
retries every 50 ms.

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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402

HELLO = ROOT / "examples" / "hello"
GET = b"GET / HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n"


@dataclass
class Sample:
    """One cold start, every time on the machine's monotonic clock."""

    sent: float  # the spawn (direct) or the request to the router (through slipway)
    started: float  # the app's first line of Python ran (X-Started-At)
    ready: float  # the app was listening (X-Ready-At)
    first_byte: float  # the client got the first response byte

    @property
    def ttfb(self) -> float:
        return self.first_byte - self.sent

    @property
    def before_app(self) -> float:
        return self.started - self.sent

    @property
    def after_ready(self) -> float:
        return self.first_byte - self.ready


def first_byte(port: int, sent: float, deadline: float) -> Sample:
    """Poll ``port`` with a GET until it answers; the times of its first response byte."""
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
            data = sock.recv(1)
            if not data:
                raise RuntimeError("connection closed without a response")
            got = time.monotonic()
            while chunk := sock.recv(
                65536
            ):  # all of it, so the app never writes to a closed socket
                data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
        fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:])
        return Sample(sent, float(fields["x-started-at"]), float(fields["x-ready-at"]), got)


def direct(command: str) -> Sample:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DYNO": "web.1"}
    sent = time.monotonic()
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=HELLO,
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return first_byte(port, sent, sent + 30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


#: slipway up's token for this run: its agent API (and logs, control) take it.
TOKEN = "slw_bench_wake_" + os.urandom(16).hex()


def state(agent_port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{agent_port}/v1/apps", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
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
    # The line as LocalRuntime runs it: a simple command is exec'd (agent.local.shell_line;
    # not imported, as bench/control.py would shadow the control package here).
    command = "exec " + (HELLO / "Procfile").read_text().split(":", 1)[1].strip()
    port, ops, agent = free_port(), free_port(), free_port()
    logs, forward, control = free_port(), free_port(), free_port()
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
                f"--logs-port={logs}",
                f"--forward-port={forward}",
                f"--control-port={control}",
                f"--state-dir={tmp}/state",
                "--idle-after=100ms",
                "--log-level=WARNING",
            ],
            env={**os.environ, "SLIPWAY_TOKEN": TOKEN},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_state(agent, "asleep")
            directs: list[Sample] = []
            woken: list[Sample] = []
            for _ in range(args.runs):
                directs.append(direct(command))
                wait_state(agent, "asleep")
                sent = time.monotonic()
                woken.append(first_byte(port, sent, sent + 30))
            wait_state(agent, "asleep")
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(30)
    report(args.runs, directs, woken)


def report(runs: int, directs: list[Sample], woken: list[Sample]) -> None:
    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1000

    print(f"cold starts: {runs} of examples/hello (stdlib http.server), interleaved")
    print("                                     direct   slipway")
    for label, attr in (
        ("spawn/request -> first byte (TTFB)", "ttfb"),
        ("  of which: until the app's Python runs", "before_app"),
        ("  of which: app listening -> first byte", "after_ready"),
    ):
        d = ms([getattr(x, attr) for x in directs])
        w = ms([getattr(x, attr) for x in woken])
        print(f"{label:<40} {d:7.1f} ms {w:7.1f} ms")
    boot = ms([x.ready - x.started for x in directs + woken])
    print(f"the app's own boot (Python runs -> listening), median of all: {boot:.1f} ms")
    before = ms([x.before_app for x in woken]) - ms([x.before_app for x in directs])
    after = ms([x.after_ready for x in woken]) - ms([x.after_ready for x in directs])
    print(f"wake overhead before the app runs (hold, wake, spawn)   {before:6.1f} ms")
    print(f"wake overhead after it listens (probe, publish, proxy)  {after:6.1f} ms")
    print(f"WAKE OVERHEAD (sum; goal < 20 ms)                       {before + after:6.1f} ms")
    naive = ms([x.ttfb for x in woken]) - ms([x.ttfb for x in directs])
    print(f"(TTFB medians subtracted, boot noise included:           {naive:6.1f} ms)")


if __name__ == "__main__":
    main()
