"""Real pieces for agent tests: app directories with a Procfile, and slipway up on free ports."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from agent.settings import AgentSettings, LocalSettings
from control.up import Up, UpSettings
from router.settings import RouterSettings

HERE = Path(__file__).parent


@dataclass
class ListSink:
    """Collects app output lines (the ProcessLogSink seam) and router lines (LogSink)."""

    lines: list[tuple[str, str, str]] = field(default_factory=list)
    router_lines: list[str] = field(default_factory=list)

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        self.lines.append((app, process, text))

    def emit(self, app: str, line: str) -> None:
        self.router_lines.append(line)


def write_app(root: Path, name: str, env: dict[str, str] | None = None, **policy: Any) -> str:
    """An app directory under ``root`` and its TOML table (returned)."""
    directory = root / name
    directory.mkdir()
    # -S: no site-packages to scan, so each of the many cold starts costs half as much.
    # The app's own copy: under `slipway up` an app sees its directory only (kit/spawn.py).
    shutil.copy(HERE / "app.py", directory / "app.py")
    (directory / "Procfile").write_text(f"web: {sys.executable} -S app.py\n")
    table = {"directory": name, "hosts": [f"{name}.test"], "env": env or {}, **policy}
    lines = [f"[apps.{name}]"]
    for key, value in table.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def local_up_settings(
    apps_file: Path | None,
    *,
    agent: dict[str, Any] | None = None,
    local: LocalSettings | None = None,
    **up: Any,
) -> UpSettings:
    """``slipway up`` with no control plane, on free loopback ports, the agent ticking every
    10 ms. ``agent`` adds AgentSettings fields (token, autoscale_interval); ``up`` adds
    UpSettings fields (logs, dynos)."""
    return UpSettings(
        apps_file=apps_file,
        router=RouterSettings(host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0),
        agent=AgentSettings(host="127.0.0.1", port=0, tick=0.01, **(agent or {})),
        local=local or LocalSettings(),
        **up,
    )


def quiet_up(settings: UpSettings, registry: CollectorRegistry | None = None) -> Up:
    """An (unstarted) Up whose app and router lines go to a ListSink (the tests read them
    elsewhere, or not at all)."""
    sink = ListSink()
    return Up(settings, registry=registry, app_sink=sink, router_sink=sink)


@contextlib.asynccontextmanager
async def running_up(
    settings: UpSettings, *, timeout: float = 60
) -> AsyncIterator[tuple[Up, aiohttp.ClientSession]]:
    """A started quiet Up and an HTTP session (``timeout`` seconds a request); both closed
    after."""
    up = quiet_up(settings)
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
    try:
        yield up, session
    finally:
        await session.close()
        await up.stop()


@dataclass
class Running:
    up: Up
    sink: ListSink
    registry: CollectorRegistry

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.up.router.port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.up.api_port}"

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def state(self, app: str) -> str:
        return str(self.up.agent.machines[app].phase)


StartUp = Callable[..., Awaitable[Running]]


@pytest.fixture
async def slipway(tmp_path: Path) -> AsyncIterator[StartUp]:
    """``await slipway(apps_toml)``: slipway up on free ports with quick restarts and ticks."""
    started: list[Running] = []

    async def start(apps_toml: str, **local: Any) -> Running:
        path = tmp_path / "apps.toml"
        path.write_text(apps_toml)
        settings = local_up_settings(
            path,
            local=LocalSettings(
                **{"backoff_initial": 0.05, "backoff_max": 0.2, "stop_grace": 2.0, **local}
            ),
        )
        sink = ListSink()
        registry = CollectorRegistry()
        up = Up(settings, registry=registry, app_sink=sink, router_sink=sink)
        await up.start()
        running = Running(up, sink, registry)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.up.stop()


async def get(
    http: aiohttp.ClientSession, url: str, host: str, path: str = "/"
) -> tuple[int, str, aiohttp.typedefs.LooseHeaders]:
    async with http.get(url + path, headers={"Host": host}) as resp:
        return resp.status, await resp.text(), resp.headers
