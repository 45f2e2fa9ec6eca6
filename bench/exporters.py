"""One exporter for every add-on vs one exporter per add-on that reconnects on every scrape.

Setup: 200 Postgres databases on the shared server (prefix slipway_exp_b_, dropped at
the end) as add-on database targets of one server target, and 50 redis-server
processes on free ports. Then, for each kind:

- ours: ``slipway exporter postgres|redis`` as a subprocess, polling every
  ``INTERVAL``; measured over ``ROUNDS`` poll rounds: the full poll
  (slipway_exporter_round_duration_seconds), /metrics latency (the first scrape
  after each round, which assembles the body, and the cached rest), the
  exporter's RSS, connections the servers saw opened, and the servers' CPU;
- peer (same run): the one-exporter-per-target pattern of postgres_exporter /
  redis_exporter, which open a connection per scrape, run their queries and
  close it; emulated in-process with the same queries (Postgres) or
  redis_exporter's CONFIG GET * + INFO ALL (Redis), for ``ROUNDS`` scrapes of
  every target.

Both are reported per minute at a 15 s scrape interval (per round x 4).

Server CPU is counted above each server's idle rate, measured first for 5 s.
Postgres is shared with other work on this machine, so its figure is noisy; it
is the postmaster's own and reaped children's CPU plus the live backends'. The
redis-servers are ours alone. Everything is bounded: the run takes ~2-3 minutes.

    .venv/bin/python bench/exporters.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import psycopg
import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporters import pg_server, postgres
from tests.conftest import free_port
from tests.exporters.conftest import redis_command

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PREFIX = f"slipway_exp_b_{os.getpid()}_"
DATABASES = 200
REDIS_SERVERS = 50
INTERVAL = 5.0  # seconds between our polls during the measurement
ROUNDS = 3  # poll rounds (ours) and scrapes of every target (peer) measured
PER_MINUTE = 60 / 15  # rounds per minute at Prometheus' usual 15 s interval
DDL_WORKERS = 10  # CREATE/DROP DATABASE wait on checkpoints; concurrent ones share them
CONCURRENCY = 16  # peer connects at once; Postgres' max_connections is shared
CLK_TCK = os.sysconf("SC_CLK_TCK")
SLIPWAY = str(Path(sys.executable).parent / "slipway")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (reaped backends)
    return ticks / CLK_TCK


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or at its peak so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def postgres_cpu() -> float:
    with psycopg.connect(PG_ADMIN) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity").fetchall()]
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
    postmaster = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
    return cpu_seconds(postmaster, children=True) + sum(cpu_seconds(p) for p in pids)


class BusyCpu:
    """Server CPU above its idle rate, the rate measured first with nothing polling.

    Fifty idle redis-servers burn CPU in their timers (hz 10) whether polled or
    not; without this the pattern observed longer would look costlier.
    """

    def __init__(self, raw) -> None:  # type: ignore[no-untyped-def]
        self.raw = raw
        self.rate = 0.0

    async def calibrate(self, seconds: float = 5.0) -> None:
        cpu, started = self.raw(), time.monotonic()
        await asyncio.sleep(seconds)
        self.rate = (self.raw() - cpu) / (time.monotonic() - started)

    def __call__(self) -> float:
        return float(self.raw() - self.rate * time.monotonic())


def postgres_sessions() -> int:
    """Sessions opened to the bench databases (the measuring connection uses another)."""
    with psycopg.connect(PG_ADMIN) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(sessions), 0) FROM pg_stat_database WHERE datname LIKE %s",
            (PREFIX + "%",),
        ).fetchone()
    return int(row[0])  # type: ignore[index]


class RedisCounter:
    """total_connections_received of every server, read over kept connections."""

    def __init__(self, ports: list[int]) -> None:
        self.clients = [redis.Redis(port=port) for port in ports]

    def __call__(self) -> int:
        return sum(int(c.info("stats")["total_connections_received"]) for c in self.clients)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def redis_cpu(processes: list[subprocess.Popen[bytes]]) -> float:
    return sum(cpu_seconds(p.pid) for p in processes)


async def scrape_metrics(port: int, exporter_pid: int, measure) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Scrape every 0.1 s until ROUNDS new rounds ended; time the scrapes."""
    first, rest, rounds = [], [], []
    url = f"http://127.0.0.1:{port}/metrics"
    last_round = None
    before = None
    async with aiohttp.ClientSession() as session, asyncio.timeout(ROUNDS * INTERVAL + 30):
        while len(rounds) <= ROUNDS:
            started = time.perf_counter()
            async with session.get(url) as response:
                body = await response.text()
            took = time.perf_counter() - started
            round_line = next(
                (ln for ln in body.splitlines() if ln.startswith("slipway_exporter_round_dur")), ""
            )
            if round_line != last_round:
                if last_round is not None:
                    first.append(took)
                rounds.append(float(round_line.rsplit(" ", 1)[1]))
                if before is None:  # counters start at the end of the first round seen
                    before = measure()
            else:
                rest.append(took)
            last_round = round_line
            await asyncio.sleep(0.1)
        after = measure()
        series = sum(1 for ln in body.splitlines() if ln and not ln.startswith("#"))
    conns = after[0] - before[0]  # type: ignore[index]
    cpu = after[1] - before[1]  # type: ignore[index]
    return {
        "round_s": statistics.median(rounds[1:]),
        "conns_per_min": conns / ROUNDS * PER_MINUTE,
        "server_cpu_s_per_min": cpu / ROUNDS * PER_MINUTE,
        "first_ms": max(first) * 1000 if first else float("nan"),
        "cached_p50_ms": statistics.median(rest) * 1000 if rest else float("nan"),
        "cached_max_ms": max(rest) * 1000 if rest else float("nan"),
        "series": series,
        "rss_mb": rss_mb(exporter_pid),
        "peak_rss_mb": rss_mb(exporter_pid, "VmHWM"),
    }


async def wait_ready(port: int) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(60):
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def run_ours(kind: str, targets: Path, measure_conns, measure_cpu) -> dict[str, float]:  # type: ignore[no-untyped-def]
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        SLIPWAY, "exporter", kind, "--targets", str(targets), "--port", str(port),
        "--interval", f"{INTERVAL}s", "--timeout", f"{INTERVAL * 0.8}s", "--log-level", "warning",
    )  # fmt: skip
    try:
        await wait_ready(port)
        return await scrape_metrics(port, process.pid, lambda: (measure_conns(), measure_cpu()))
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 15)


async def peer_postgres_scrape(db: str, semaphore: asyncio.Semaphore) -> None:
    async with semaphore:
        dsn = f"host=127.0.0.1 user=postgres dbname={db} application_name=peer-exporter"
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for query in (postgres.SERVER_QUERY, pg_server.SETTINGS_QUERY,
                          pg_server.BGWRITER_QUERY, postgres.DATABASES_QUERY,
                          postgres.LOCKS_QUERY):  # fmt: skip
                await (await conn.execute(query)).fetchall()
            await (await conn.execute(postgres.ACTIVITY_QUERY, (300,))).fetchall()


async def peer_redis_scrape(port: int, semaphore: asyncio.Semaphore) -> None:
    async with semaphore:
        client = aioredis.Redis(port=port, client_name="peer-exporter")
        try:
            await client.config_get("*")
            await client.info("all")
        finally:
            await client.aclose()


async def run_peer(scrape_all, measure_conns, measure_cpu, rounds: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    conns, cpu = measure_conns(), measure_cpu()
    scrape_times = []
    for _ in range(rounds):
        started = time.monotonic()
        await scrape_all()
        scrape_times.append(time.monotonic() - started)
    return {
        "round_s": statistics.median(scrape_times),
        "conns_per_min": (measure_conns() - conns) / rounds * PER_MINUTE,
        "server_cpu_s_per_min": (measure_cpu() - cpu) / rounds * PER_MINUTE,
    }


def each_database(statement: str, names: list[str]) -> None:
    def run(chunk: list[str]) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in chunk:
                conn.execute(statement.format(name=name))

    with ThreadPoolExecutor(max_workers=DDL_WORKERS) as pool:
        list(pool.map(run, [names[i::DDL_WORKERS] for i in range(DDL_WORKERS)]))


def start_redis(workdir: Path) -> tuple[list[int], list[subprocess.Popen[bytes]]]:
    ports, processes = [], []
    for _ in range(REDIS_SERVERS):
        port = free_port()
        ports.append(port)
        processes.append(
            subprocess.Popen(
                redis_command(port, workdir),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    deadline = time.monotonic() + 30
    for port in ports:
        while True:
            try:
                with redis.Redis(port=port, socket_timeout=0.5) as client:
                    client.set("k", "v")
                    break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    return ports, processes


def report(kind: str, ours: dict[str, float], peer: dict[str, float]) -> None:
    print(f"\n== {kind}")
    print(f"  ours: full poll {ours['round_s'] * 1000:.0f} ms; /metrics first after a poll "
          f"{ours['first_ms']:.1f} ms, cached p50 {ours['cached_p50_ms']:.1f} ms "
          f"(max {ours['cached_max_ms']:.1f} ms); {ours['series']:.0f} series; "
          f"RSS {ours['rss_mb']:.0f} MB (peak {ours['peak_rss_mb']:.0f} MB)")  # fmt: skip
    print(f"  ours: {ours['conns_per_min']:.0f} connections opened/min, server CPU "
          f"{ours['server_cpu_s_per_min']:.2f} s/min")  # fmt: skip
    print(f"  peer (one exporter per target, connect per scrape): one scrape of every target "
          f"{peer['round_s'] * 1000:.0f} ms; {peer['conns_per_min']:.0f} connections "
          f"opened/min, server CPU {peer['server_cpu_s_per_min']:.2f} s/min")  # fmt: skip
    if ours["server_cpu_s_per_min"] > 0:
        ratio = peer["server_cpu_s_per_min"] / ours["server_cpu_s_per_min"]
        print(f"  ratio: peer/ours server CPU {ratio:.1f}x")


async def main() -> None:
    started = time.monotonic()
    databases = [f"{PREFIX}{i:03d}" for i in range(DATABASES)]
    workdir = Path(tempfile.mkdtemp(prefix="slipway-bench-exporters-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        each_database('CREATE DATABASE "{name}"', databases)
        print(f"created {DATABASES} databases in {time.monotonic() - started:.0f} s")
        pg_targets = workdir / "pg.toml"
        pg_targets.write_text(
            # the server target connects to a bench database, so its sessions are counted;
            # scope "database": other work's databases on the shared server stay out of
            # the figures (the series count varied with them)
            f'[[targets]]\nname = "shared"\ndsn = "host=127.0.0.1 user=postgres '
            f'dbname={databases[0]}"\nscope = "database"\n'
            + "".join(
                f'[[targets]]\nname = "addon-{i}"\nserver = "shared"\ndatabase = "{db}"\n'
                f'labels = {{ app = "app{i}", plan = "basic" }}\n'
                for i, db in enumerate(databases)
            )
        )
        pg_cpu = BusyCpu(postgres_cpu)
        await pg_cpu.calibrate()
        ours = await run_ours("postgres", pg_targets, postgres_sessions, pg_cpu)
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def pg_all() -> None:
            await asyncio.gather(*(peer_postgres_scrape(db, semaphore) for db in databases))

        # one scrape of all 200: each runs pg_database_size() over every database, as
        # postgres_exporter's database collector does, so a round takes many seconds
        peer = await run_peer(pg_all, postgres_sessions, pg_cpu, rounds=1)
        report(f"Postgres: {DATABASES} add-on databases on one server", ours, peer)

        ports, processes = start_redis(workdir)
        redis_targets = workdir / "redis.toml"
        redis_targets.write_text(
            "".join(
                f'[[targets]]\nname = "redis-{i}"\ndsn = "redis://127.0.0.1:{port}/0"\n'
                for i, port in enumerate(ports)
            )
        )
        counter = RedisCounter(ports)
        busy = BusyCpu(lambda: redis_cpu(processes))
        await busy.calibrate()
        ours = await run_ours("redis", redis_targets, counter, busy)

        async def redis_all() -> None:
            await asyncio.gather(*(peer_redis_scrape(port, semaphore) for port in ports))

        peer = await run_peer(redis_all, counter, busy, rounds=ROUNDS)
        counter.close()
        report(f"Redis: {REDIS_SERVERS} redis-server processes", ours, peer)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        each_database('DROP DATABASE IF EXISTS "{name}"', databases)
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"\ntotal {time.monotonic() - started:.0f} s (machine shared with other work: "
              "treat absolute figures as noisy, ratios as the result)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
