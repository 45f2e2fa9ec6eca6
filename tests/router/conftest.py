"""Real servers for router tests: an app process, the router on free ports, nginx in front."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from router.routes import AppRoute, Endpoint, Routes, RouteTable
from router.server import Router
from router.settings import RouterSettings
from router.waking import Waker
from tests.conftest import free_port

HERE = Path(__file__).parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


async def send(port: int, data: bytes) -> bytes:
    """Raw bytes to a router on loopback; everything it answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)  # read() returning means closed
    writer.close()
    return answer


def wait_port(port: int, timeout: float = 30.0) -> None:  # a process start, under load
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


@dataclass
class AppProcess:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, "web.1")


def start_app(name: str = "app") -> AppProcess:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "upstream_app.py"), str(port), name])
    wait_port(port)
    return AppProcess(port, proc)


@pytest.fixture(scope="session")
def app() -> Iterator[AppProcess]:
    process = start_app()
    yield process
    process.proc.terminate()
    process.proc.wait(10)


@dataclass
class ListSink:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def emit(self, app: str, line: str) -> None:
        self.lines.append((app, line))

    def only(self) -> str:
        assert len(self.lines) == 1, self.lines
        return self.lines[0][1]


@dataclass
class RunningRouter:
    router: Router
    routes: Routes
    sink: ListSink
    registry: CollectorRegistry

    @property
    def port(self) -> int:
        return self.router.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router.port}"

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def route(self, *apps: AppRoute) -> None:
        self.routes.replace(RouteTable.build(self.routes.table.version + 1, apps))


def in_flight(r: RunningRouter, app: str = "hello") -> int:
    """Requests ``app`` has in flight at ``r`` (0 before its first one arrived)."""
    entry = r.router.activity.apps.get(app)
    return 0 if entry is None else entry.in_flight


async def start_router(
    apps: list[AppRoute], *, waker: Waker | None = None, **overrides: object
) -> RunningRouter:
    settings = RouterSettings(host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0)
    for key, value in overrides.items():
        settings = settings.__class__(**{**_fields(settings), key: value})
    routes = Routes(RouteTable.build(1, apps))
    registry = CollectorRegistry()
    sink = ListSink()
    router = Router(settings, routes=routes, registry=registry, sink=sink, waker=waker)
    await router.start()
    return RunningRouter(router, routes, sink, registry)


def _fields(settings: RouterSettings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


@pytest.fixture
async def router(app: AppProcess) -> AsyncIterator[RunningRouter]:
    running = await start_router(
        [AppRoute("hello", hosts=("hello.test", "*.apps.test"), endpoints=(app.endpoint,))]
    )
    yield running
    await running.router.stop(grace=1)


@dataclass
class Nginx:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def nginx(router: RunningRouter) -> Iterator[Nginx]:
    """nginx as the ingress: streaming, WebSockets and SSE on, as charts/ configures it."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="slipway-nginx-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(
            f"""
worker_processes 1;
daemon off;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    client_max_body_size 0;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream router {{ server 127.0.0.1:{router.port}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://router;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Port 443;
            proxy_set_header X-Request-Id $http_x_request_id;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""
        )
        proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", tmp])
        try:
            wait_port(port)
            yield Nginx(port)
        finally:
            proc.terminate()
            proc.wait(10)
