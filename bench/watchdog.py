"""The postgres watchdog's cost and how late it cancels, against the real server.

One tenant (plan: 1 s statement limit) holds ``--sessions`` idle connections.
Printed:

- cost of one check (registry read excluded): wall time, this process's CPU
  and the server backend's CPU (from /proc, the server being local), measured
  over ``--checks`` back-to-back checks; at one check per second the CPU share
  is that cost per second;
- lateness: ``--runs`` times, the tenant lifts statement_timeout and sleeps;
  how long after the 1 s limit the watchdog (1 s interval) had it cancelled
  (each run starts at a random point of the watchdog's tick).

Run: .venv/bin/python -P bench/watchdog.py [--sessions 20] [--checks 300] [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import time
from collections.abc import Mapping

import psycopg

from control.addons.plans import PostgresPlan
from control.addons.postgres import PostgresAddons
from control.addons.watchdog import PostgresWatchdog

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PLAN = PostgresPlan(40, "1s", "60s", "1MB")


def backend_cpu(pid: int) -> float:
    """utime + stime of a server backend, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(sessions: int, checks: int, runs: int) -> None:
    addons = PostgresAddons(
        admin_dsn=ADMIN_DSN,
        public_host="127.0.0.1",
        public_port=5432,
        prefix="slipway_bench_",
        plans={"p": PLAN},
    )
    tenant = await addons.create("p")
    held: list[psycopg.AsyncConnection[tuple[object, ...]]] = []
    try:

        async def tenants() -> Mapping[str, PostgresPlan]:
            return {tenant.resource: PLAN}

        for _ in range(sessions):
            held.append(await psycopg.AsyncConnection.connect(tenant.url, autocommit=True))
        watchdog = PostgresWatchdog(admin_dsn=ADMIN_DSN, tenants=tenants)
        await watchdog.check()  # connect
        assert watchdog._conn is not None
        backend = watchdog._conn.info.backend_pid
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN) as admin:
            row = await (await admin.execute("SELECT count(*) FROM pg_stat_activity")).fetchone()
        wall, cpu, server = time.perf_counter(), time.process_time(), backend_cpu(backend)
        for _ in range(checks):
            await watchdog.check()
        wall = (time.perf_counter() - wall) / checks
        cpu = (time.process_time() - cpu) / checks
        server = (backend_cpu(backend) - server) / checks
        print(f"pg_stat_activity rows: {row[0] if row else '?'}; tenant sessions: {sessions}")
        print(
            f"per check: wall {wall * 1e3:.2f} ms, watchdog CPU {cpu * 1e3:.2f} ms, "
            f"server backend CPU {server * 1e3:.2f} ms; back-to-back {1 / wall:.0f} checks/s"
        )
        print(f"at 1 check/s: {cpu * 100:.2f}% of a core here, {server * 100:.2f}% on the server")

        task = asyncio.create_task(watchdog.run())
        late = []
        conn = held[0]
        await conn.execute("SET statement_timeout = 0")
        for _ in range(runs):
            await asyncio.sleep(random.random())  # start anywhere in the watchdog's tick
            started = time.monotonic()
            with contextlib.suppress(psycopg.errors.QueryCanceled):
                await conn.execute("SELECT pg_sleep(10)")
            late.append(time.monotonic() - started - PLAN.statement_seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        print(
            "cancelled after the limit by: "
            + ", ".join(f"{x * 1e3:.0f}" for x in late)
            + f" ms (median {statistics.median(late) * 1e3:.0f} ms, max {max(late) * 1e3:.0f} ms)"
        )
    finally:
        for conn in held:
            await conn.close()
        await addons.destroy(tenant.resource)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.checks, args.runs))
