"""Control API throughput against its own floor, measured in the same run.

`slipway serve control` (SQLite, or PostgreSQL with --postgres) serves an app
with 20 config vars. wrk drives, one after the other: GET /healthz (the same
process with no token check and no query: the aiohttp floor, the peer) and
GET /apps/bench/config-vars (token lookup + app + release + add-ons
queries). Printed: requests/s, p50 and p99 of both and the ratio. Then 50
sequential config changes (each a numbered release: lock, insert, audit,
finish) with their p50/p99 latency.

Run: .venv/bin/python bench/control.py [--seconds 10] [--connections 20] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def call(base: str, token: str, method: str, path: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def wait_ready(base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("control API did not start")


def wrk(url: str, token: str | None, seconds: int, connections: int) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if token is not None:
        args[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        assert match is not None, out
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rps, "p50": pct("50"), "p99": pct("99")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="state in PostgreSQL")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (bash .ci/services installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    token = "slw_" + secrets.token_urlsafe(32)
    port = free_port()
    database = None
    db_url = f"sqlite+aiosqlite:///{tmp}/state.db"
    if args.postgres:
        database = f"slipway_ctl_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    env = {
        **os.environ,
        "SLIPWAY_ADMIN_TOKEN": token,
        "SLIPWAY_DB_URL": db_url,
        "SLIPWAY_CONTROL_PORT": str(port),
        "SLIPWAY_LOG_LEVEL": "warning",
    }
    slipway = str(Path(sys.executable).parent / "slipway")
    proc = subprocess.Popen([slipway, "serve", "control"], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        call(base, token, "POST", "/apps", {"name": "bench"})
        call(
            base,
            token,
            "PATCH",
            "/apps/bench/config-vars",
            {f"VAR_{i}": "x" * 40 for i in range(20)},
        )
        floor = wrk(f"{base}/healthz", None, args.seconds, args.connections)
        api = wrk(f"{base}/apps/bench/config-vars", token, args.seconds, args.connections)
        latencies = []
        for i in range(50):
            started = time.perf_counter()
            call(base, token, "PATCH", "/apps/bench/config-vars", {"N": str(i)})
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        store = "postgresql" if args.postgres else "sqlite"
        print(f"store={store} connections={args.connections} seconds={args.seconds}")
        for label, result in (("GET /healthz (floor)", floor), ("GET config-vars", api)):
            print(
                f"{label:<22} {result['rps']:8.0f} req/s"
                f"  p50 {result['p50']:.2f} ms  p99 {result['p99']:.2f} ms"
            )
        print(f"ratio config-vars/floor    {api['rps'] / floor['rps']:.2f}")
        p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
        print(f"PATCH config-vars (a release each, sequential): p50 {p50:.1f} ms  p99 {p99:.1f} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
        if database is not None:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
