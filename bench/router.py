"""Router throughput and latency against nginx's proxy, measured in the same run.

An nginx serves a small response (the upstream). In front of it: nginx
proxying with an upstream keepalive pool, the router as installed (its hot
modules compiled with mypyc when the build could, see setup.py) and the router
interpreted (SLIPWAY_PURE_PYTHON=1), each with one worker; wrk drives each on
loopback, in turns, ``--rounds`` times, so load from elsewhere on a shared
machine falls on all three alike. Printed: medians of requests/s, p50 and p99,
and the median of each round's ratio to nginx and p99 difference; the router
with 2 workers; and the router's RSS growth across a 1 MB upload and a 100 MB
download.

Run: .venv/bin/python bench/router.py [--seconds 10] [--connections 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.router.conftest import wait_port  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_conf(tmp: Path, name: str, server_block: str) -> Path:
    prefix = tmp / name
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    {server_block}
}}
"""
    )
    return conf


def start_nginx(conf: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([NGINX, "-c", str(conf), "-p", str(conf.parent)])


def wrk(
    port: int, seconds: int, connections: int, host: str = "bench.localhost"
) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"Host: {host}",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockerr = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "requests": done,
        "p50_ms": _latency(out, "50%"),
        "p99_ms": _latency(out, "99%"),
        "non2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if sockerr else 0.0,
    }


def _latency(out: str, pct: str) -> float:
    match = re.search(rf"{re.escape(pct)}\s+([\d.]+)(us|ms|s)\b", out)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its descendants (nginx's workers)."""
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def measured(port: int, pid: int, seconds: int, connections: int) -> dict[str, float]:
    """One wrk run, plus the server's CPU microseconds per request: under load from
    elsewhere a process gets less of the CPU, but each request costs it the same."""
    before = cpu_seconds(pid)
    result = wrk(port, seconds, connections)
    result["cpu_us"] = (cpu_seconds(pid) - before) / max(result["requests"], 1.0) * 1e6
    return result


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_router(
    tmp: Path, upstream_port: int, workers: int, *, pure: bool = False
) -> tuple[subprocess.Popen[bytes], int, int]:
    port, ops = free_port(), free_port()
    routes = tmp / f"routes-{workers}-{pure}.json"
    routes.write_text(
        json.dumps(
            {
                "version": 1,
                "apps": {
                    "bench": {
                        "hosts": ["bench.localhost"],
                        "endpoints": [{"host": "127.0.0.1", "port": upstream_port}],
                    }
                },
            }
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "control",
            "serve",
            "router",
            "--port",
            str(port),
            "--ops-port",
            str(ops),
            "--workers",
            str(workers),
            "--routes",
            str(routes),
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env={**os.environ, "SLIPWAY_PURE_PYTHON": "1" if pure else "0"},
        stderr=subprocess.DEVNULL,  # router lines are written, as in production, then dropped
    )
    wait_port(port)
    return proc, port, ops


def stream_check(router_pid: int, port: int) -> dict[str, int]:
    """RSS growth of the router across a 1 MB upload and a 100 MB download."""
    before = rss_kb(router_pid)
    body = os.urandom(1 << 20)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/upload", data=body, headers={"Host": "bench.localhost"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
    after_up = rss_kb(router_pid)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/big", headers={"Host": "bench.localhost"}
    )
    got = 0
    peak = after_up
    with urllib.request.urlopen(req, timeout=60) as resp:
        while chunk := resp.read(1 << 20):
            got += len(chunk)
            peak = max(peak, rss_kb(router_pid))
    if got != 100 << 20:
        raise RuntimeError(f"download was {got} bytes, not 100 MiB")
    return {
        "rss_before_kb": before,
        "upload_growth_kb": after_up - before,
        "download_peak_growth_kb": peak - before,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None or not Path(NGINX).exists():
        print("bench/router.py needs nginx and wrk: run `make services` first", file=sys.stderr)
        return 2
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "www").mkdir()
        with open(tmp / "www" / "big", "wb") as f:
            f.truncate(100 << 20)
        try:
            up = free_port()
            procs.append(
                start_nginx(
                    nginx_conf(
                        tmp,
                        "upstream",
                        f"""server {{
        listen 127.0.0.1:{up} reuseport backlog=4096;
        client_max_body_size 10m;
        location = / {{ return 200 "hello, slipway\\n"; }}
        location = /upload {{ return 200 "ok\\n"; }}
        location = /big {{ root {tmp}/www; }}
    }}""",
                    )
                )
            )
            px = free_port()
            nginx_proc = start_nginx(
                nginx_conf(
                    tmp,
                    "proxy",  # nginx's proxy, the peer the router is measured against
                    f"""upstream app {{ server 127.0.0.1:{up}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{px} reuseport backlog=4096;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}""",
                )
            )
            procs.append(nginx_proc)
            wait_port(up)
            wait_port(px)
            s, c = args.seconds, args.connections
            router_proc, rport, _ = start_router(tmp, up, 1)
            procs.append(router_proc)
            pure_proc, pport, _ = start_router(tmp, up, 1, pure=True)
            procs.append(pure_proc)
            ports = {
                "nginx": (px, nginx_proc.pid),
                "router": (rport, router_proc.pid),
                "pure": (pport, pure_proc.pid),
            }
            for port, _ in ports.values():
                wrk(port, 2, c)  # warm each (and nginx's upstream pool)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
            for _ in range(args.rounds):
                for name, (port, pid) in ports.items():
                    runs[name].append(measured(port, pid, s, c))
            pure_proc.terminate()
            pure_proc.wait(30)
            streams = stream_check(router_proc.pid, rport)
            router_proc.terminate()
            router_proc.wait(30)
            router2_proc, r2port, _ = start_router(tmp, up, 2)
            procs.append(router2_proc)
            wrk(r2port, 2, c)
            router2 = wrk(r2port, s, c)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    cores = os.cpu_count()
    print(
        f"router bench: wrk -t1 -c{args.connections} -d{args.seconds}s x {args.rounds} rounds"
        f" in turns, loopback, {cores} cores (medians)"
    )
    nginx, router, pure = (_median(runs[name]) for name in ("nginx", "router", "pure"))
    rows = (
        ("nginx proxy (1 worker)", nginx),
        (f"router, {_build()} (1 worker)", router),
        ("router, interpreted (1 worker)", pure),
        ("router (2 workers)", router2),
    )
    for name, r in rows:
        print(
            f"  {name:32} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:6.2f} ms"
            f"  p99 {r['p99_ms']:6.2f} ms  non-2xx {r['non2xx']:.0f}"
            + (f"  CPU {r['cpu_us']:5.1f} us/request" if "cpu_us" in r else "")
        )
    for name, label in (("router", _build()), ("pure", "interpreted")):
        pairs = list(zip(runs[name], runs["nginx"], strict=True))
        ratios = [r["rps"] / n["rps"] for r, n in pairs]
        deltas = [r["p99_ms"] - n["p99_ms"] for r, n in pairs]
        print(
            f"  router/nginx, {label:11} (1 worker): ratio {statistics.median(ratios):.2f}"
            f" [{min(ratios):.2f}-{max(ratios):.2f}],"
            f" p99 {statistics.median(deltas):+.2f} ms [{min(deltas):+.2f} to {max(deltas):+.2f}]"
        )
    print(f"  ratio router/nginx (2 workers): {router2['rps'] / nginx['rps']:.2f}")
    mb = {k: v / 1024 for k, v in streams.items()}
    print(
        f"  streaming: RSS {mb['rss_before_kb']:.1f} MB before;"
        f" +{mb['upload_growth_kb']:.1f} MB after a 1 MB upload;"
        f" +{mb['download_peak_growth_kb']:.1f} MB peak during a 100 MB download"
    )
    return 0


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def _build() -> str:
    """How the router under test was installed: its hot modules compiled or not."""
    out = subprocess.run(
        [sys.executable, "-c", "import router.client as c; print(c.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "compiled" if out.strip().endswith(".so") else "as installed (not compiled)"


if __name__ == "__main__":
    sys.exit(main())
