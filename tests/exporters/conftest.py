"""Real servers for the exporter tests: Postgres databases, redis-servers, a silent port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from exporters.collector import SnapshotStore
from exporters.service import Exporter
from tests.conftest import free_port

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
#: Other helpers share this Postgres server: every object the tests make carries this
#: prefix and this process id, and only those are dropped.
PREFIX = f"slipway_exp_t_{os.getpid()}_"
#: Connections used to create and drop the test databases (of max_connections 100, shared).
DDL_WORKERS = 10


def redis_command(port: int, workdir: Path, *extra: str) -> list[str]:
    """A throwaway redis-server on loopback: no persistence, its files in ``workdir``."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), *extra]  # fmt: skip


async def poll_round(exporter: Exporter) -> None:
    """A poll round as if an interval had passed since the last: every target is due,
    failing ones too (the backoff is skipped rather than slept through)."""
    exporter.poller._states.clear()
    await exporter.poller.poll_once()


def next_round(exporter: Exporter) -> None:
    """Have a serving exporter's own loop run a round now, as if its interval had passed:
    every target due, the targets files re-read (after the round in progress, if any).

    For tests that wait on news from a running exporter: they ask for a round at each
    check and give the exporter a long interval and a timeout no loaded machine misses,
    instead of a short interval whose sub-second timeout it misses (each miss backing
    the target off further, up to minutes)."""
    exporter.poller._states.clear()
    exporter.reload_requested.set()


def own_backends(admin: psycopg.Connection[Any], application_name: str) -> list[int]:
    """Pids of the server backends serving this test process's connections by that name.

    Other test runs, benches and exporters share the server and the name; a backend is ours
    when its client port is the local port of one of this process's sockets.
    """
    rows = admin.execute(
        "SELECT pid, client_port FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    ).fetchall()
    ports = own_tcp_ports()
    return [pid for pid, port in rows if port in ports]


def own_tcp_ports() -> set[int]:
    """Local ports of the TCP sockets this process holds open (Linux's /proc)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # an fd closed while we list them
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link.removeprefix("socket:[").removesuffix("]"))
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def sample(store: SnapshotStore, target: str, name: str, **labels: str) -> float | None:
    """The value of one sample of one target in the store, or None."""
    snapshot = store.get(target)
    if snapshot is None:
        return None
    for s in snapshot.samples():
        have = dict(s.labels)
        if s.name == name and all(have.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return None


def _each(statement: str, names: list[str]) -> None:
    """Run ``statement`` for every name from a few connections at once.

    CREATE and DROP DATABASE each wait for a checkpoint; concurrent requests share
    one, which keeps 50 of them to seconds even on a busy shared server.
    """

    def run(chunk: list[str]) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in chunk:
                try:
                    conn.execute(statement.format(name=name))
                except psycopg.errors.ObjectInUse:
                    # a test left a session behind; FORCE ends it (and waits for it)
                    conn.execute(statement.format(name=name) + " WITH (FORCE)")

    with ThreadPoolExecutor(max_workers=DDL_WORKERS) as pool:
        list(pool.map(run, [names[i::DDL_WORKERS] for i in range(DDL_WORKERS)]))


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[list[str]]:
    """50 databases on the shared server, dropped at the end."""
    names = [f"{PREFIX}{i:02d}" for i in range(50)]
    try:
        _each('CREATE DATABASE "{name}"', names)
        yield names
    finally:
        _each('DROP DATABASE IF EXISTS "{name}"', names)


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-server processes on free ports; all are stopped at the end."""
    started: list[RedisServer] = []

    def start(*extra: str) -> RedisServer:
        port = free_port()
        workdir = tmp_path / f"redis-{port}"
        workdir.mkdir()
        process = subprocess.Popen(
            redis_command(port, workdir, *extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = RedisServer(port, process)
        started.append(server)
        deadline = time.monotonic() + 10
        while True:
            try:
                if server.client(socket_timeout=0.5).ping():
                    return server
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            except redis.exceptions.AuthenticationError:
                return server  # up, default user disabled by the test's ACL

    yield start
    for server in started:
        server.process.terminate()
    for server in started:
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP listener that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    yield port
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()
