"""A logs service assembled in-process on loopback ports, and a moto S3 server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from logs.archive import Spool
from logs.auth import StaticTokens
from logs.http import build_app
from logs.metrics import LogsMetrics
from logs.ring import Hub
from logs.s3 import S3Store
from logs.server import ForwardServer
from logs.service import LogService
from tests.conftest import free_port

ADMIN = "admin-token"
SHOP_TOKEN = "shop-token"


@dataclass
class Service:
    hub: Hub
    registry: CollectorRegistry
    metrics: LogsMetrics
    service: LogService
    spool: Spool
    forward_port: int
    url: str

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


async def start_service(
    tmp: Path,
    *,
    queue: int = 1000,
    lines: int = 1500,
    shared_key: str | None = None,
    heartbeat: float = 15.0,
    store: S3Store | None = None,
) -> tuple[Service, Any]:
    registry = CollectorRegistry()
    metrics = LogsMetrics(registry)
    hub = Hub(lines=lines, queue=queue, on_drop=metrics.dropped.labels("slow_subscriber").inc)
    spool = Spool(tmp / "spool", max_bytes=10_000_000, flush_bytes=1_000_000, flush_age=60.0)
    service = LogService(hub=hub, metrics=metrics, spool=spool)
    forward = ForwardServer(service=service, metrics=metrics, shared_key=shared_key)
    fport = await forward.start("127.0.0.1", 0)
    app = build_app(
        hub=hub,
        verifier=StaticTokens(admin=ADMIN, apps={"shop": SHOP_TOKEN}),
        metrics=metrics,
        registry=registry,
        ready=lambda: None,
        store=store,
        heartbeat=heartbeat,
    )
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async def stop() -> None:
        await forward.stop()
        await runner.cleanup()
        spool.close()

    return Service(hub, registry, metrics, service, spool, fport, f"http://127.0.0.1:{port}"), stop


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Service]:
    service, stop = await start_service(tmp_path)
    yield service
    await stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


class ForwardClient:
    """A raw TCP forward client: writes frames, reads msgpack replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.unpacker = msgpack.Unpacker(raw=False)

    @classmethod
    async def connect(cls, port: int) -> ForwardClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, frame: Any) -> None:
        self.writer.write(frame if isinstance(frame, bytes) else msgpack.packb(frame))
        await self.writer.drain()

    async def reply(self, timeout: float = 5.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for obj in self.unpacker:
                    return obj
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError("closed by the server")
                self.unpacker.feed(data)

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    data = await self.reader.read(65536)
                except ConnectionResetError:
                    return True
                if not data:
                    return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


# --- moto ---------------------------------------------------------------------------


class Moto:
    """``python -m moto.server`` on a loopback port; stop() and start() simulate an outage."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            if self.proc.poll() is not None:
                raise RuntimeError("moto server exited at start")
            time.sleep(0.05)
        raise RuntimeError("moto server did not listen within 20 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[Moto]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = Moto(free_port())
    server.start()
    yield server
    server.stop()
