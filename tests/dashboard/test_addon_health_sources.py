"""The add-on health's other sources, each real on loopback: the Redis exporter's /probe
(memory thresholds on a redis-server whose maxmemory is moved), Prometheus scraping the
exporter's /probe (Debian's prometheus), and backup health from ``Backups`` on the page."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from control.dashboard.addon_health import (
    AMBER,
    GREEN,
    RED,
    AddonHealth,
    HealthSources,
    read_health,
)
from control.dashboard.app import Dashboard, build_dashboard
from control.dashboard.users import Users
from control.models import Addon
from exporters.service import Exporter
from exporters.settings import ExporterSettings
from exporters.targets import Kind
from kit.runner import supervise
from tests.backups.conftest import Env, backups_env, moto_server  # noqa: F401 (fixture)
from tests.conftest import free_port
from tests.exporters.conftest import (  # noqa: F401 (fixture)
    RedisServer,
    next_round,
    redis_servers,
)
from tests.helpers import eventually

PASSWORD = "a-long-enough-password"
TARGET = "redis-0a1b2c3d"


def addon(name: str, service: str) -> Addon:
    return Addon(
        id="x", app="shop", name=name, service=service, plan="mini", attachment="CACHE",
        url="", resource=name, created_at=0.0,
    )  # fmt: skip


@pytest.fixture
async def redis_exporter(
    tmp_path: Path,
    redis_servers: Callable[..., RedisServer],  # noqa: F811 (the imported fixture)
) -> AsyncIterator[tuple[str, RedisServer, Exporter]]:
    """The Redis exporter on loopback. Its rounds come when a check asks for one
    (``next_round``): with a round every 0.2 s and a 0.15 s timeout, a loaded machine
    missed polls, each miss backing the target off for longer. A poll gets 15 s here."""
    server = redis_servers("--maxmemory-policy", "noeviction")
    path = tmp_path / "redis-targets.toml"
    path.write_text(f'[[targets]]\nname = "{TARGET}"\ndsn = "{server.url}"\n')
    settings = ExporterSettings(
        kind=Kind.REDIS, targets_file=path, port=free_port(), interval=60.0, timeout=15.0
    )
    exporter = Exporter(settings)
    stop = asyncio.Event()
    task = asyncio.ensure_future(supervise(exporter.serve, stop=stop))
    try:
        yield f"http://127.0.0.1:{settings.port}", server, exporter
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_every_read_of_a_page_shares_one_deadline() -> None:
    """Ten add-ons behind an exporter that never answers: read in turn they would cost
    ten deadlines; sharing one, the page waits about one. Five is a bound no loaded
    machine reaches and no sequential reader meets."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(32)  # accepts (in the backlog) and never answers
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        sources = HealthSources(exporters={"postgres": base, "redis": base})
        addons = [addon(f"postgres-{i}", "postgres") for i in range(5)]
        addons += [addon(f"redis-{i}", "redis") for i in range(5)]
        started = time.perf_counter()
        found = await read_health(sources, "shop", addons)
        took = time.perf_counter() - started
    assert took >= sources.deadline
    assert took < 5 * sources.deadline, took
    for a in addons:
        assert found[a.name].note == f"no answer within {sources.deadline * 1000:.0f} ms"
        assert found[a.name].state == "unknown"


def memory_state(found: dict[str, AddonHealth]) -> str | None:
    checks = {c.label: c.state for c in found[TARGET].checks}
    return checks.get("memory")


async def test_redis_memory_over_its_maxmemory_goes_amber_then_red_then_back(
    redis_exporter: tuple[str, RedisServer, Exporter],
) -> None:
    base, server, exporter = redis_exporter
    sources = HealthSources(exporters={"redis": base})
    client = server.client()
    used = int(client.info("memory")["used_memory"])
    for factor, state in ((1.13, AMBER), (1.02, RED), (4.0, GREEN)):
        client.config_set("maxmemory", str(int(used * factor)))
        # Memory moves a little between polls; the state is what the thresholds say.

        async def reached(state: str = state) -> bool:
            next_round(exporter)  # this check, or one of the next, reads the news
            found = await read_health(sources, "shop", [addon(TARGET, "redis")])
            return memory_state(found) == state

        await eventually(reached, interval=0.1)
    # A target the exporter does not have is named as such, not an error.
    missing = await read_health(sources, "shop", [addon("redis-ffffffff", "redis")])
    assert missing["redis-ffffffff"].note == "not yet a target of the exporter"
    assert missing["redis-ffffffff"].state == "unknown"


@pytest.fixture
async def prometheus(
    tmp_path: Path, redis_exporter: tuple[str, RedisServer, Exporter]
) -> AsyncIterator[tuple[str, RedisServer, Exporter]]:
    """Debian's prometheus scraping the exporter's /probe for the add-on, every 200 ms."""
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is not installed: bash .ci/services installs it"
    base, server, exporter = redis_exporter
    address = base.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 200ms, scrape_timeout: 150ms}\n"
        "scrape_configs:\n"
        "- job_name: slipway-redis-addons\n"
        "  metrics_path: /probe\n"
        f"  static_configs: [{{targets: [{TARGET}]}}]\n"
        "  relabel_configs:\n"
        "    - {source_labels: [__address__], target_label: __param_target}\n"
        "    - {source_labels: [__param_target], target_label: instance}\n"
        f"    - {{target_label: __address__, replacement: '{address}'}}\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}", server, exporter
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_without_an_exporter_url_health_comes_from_prometheus(
    prometheus: tuple[str, RedisServer, Exporter],
) -> None:
    url, server, exporter = prometheus
    client = server.client()
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(int(used * 1.02)))
    sources = HealthSources(prometheus_url=url)

    async def red() -> bool:
        next_round(exporter)  # Prometheus scrapes what this round, or a later one, found
        found = await read_health(sources, "shop", [addon(TARGET, "redis")])
        return found[TARGET].source == "prometheus" and found[TARGET].state == RED

    await eventually(red, timeout=30, interval=0.2)
    client.config_set("maxmemory", str(used * 4))

    async def green() -> bool:
        next_round(exporter)
        found = await read_health(sources, "shop", [addon(TARGET, "redis")])
        return found[TARGET].state == GREEN

    await eventually(green, timeout=30, interval=0.2)


@pytest.fixture
async def env(tmp_path: Path, moto_server: object) -> AsyncIterator[Env]:  # noqa: F811
    async with backups_env(tmp_path, moto_server) as running:  # type: ignore[arg-type]
        yield running


async def test_a_postgres_addons_backup_health_is_on_the_page_and_goes_red_when_stale(
    env: Env,
) -> None:
    await env.app_with_db("prod")
    control = env.api.control
    [pg] = await control.list_addons("prod")
    users = Users(store=control.store)
    await users.create_user("root", PASSWORD, admin=True, actor="test")
    dash = Dashboard(control=control, users=users, addon_health=HealthSources(backups=env.backups))
    app = aiohttp.web.Application()
    app.add_subapp("/dashboard", build_dashboard(dash))
    async with (
        TestServer(app, host="127.0.0.1") as server,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session,
    ):
        base = str(server.make_url("")).rstrip("/")
        async with session.get(f"{base}/dashboard/login") as reply:
            match = re.search(r'name="csrf" value="([^"]+)"', await reply.text())
            assert match is not None
        form = {"user": "root", "password": PASSWORD, "csrf": match.group(1)}
        async with session.post(f"{base}/dashboard/login", data=form) as reply:
            assert reply.status == 200

        async def cell() -> str:
            async with session.get(f"{base}/dashboard/apps/prod") as reply:
                assert reply.status == 200
                text = await reply.text()
            row = re.search(rf'<th scope="row">{pg.name}</th>.*?</tr>', text, re.S)
            assert row is not None
            return row.group(0)

        shown = await cell()
        assert "backups: no backup schedule" in shown
        assert "no health source configured" in shown
        await env.backups.set_schedule("prod", "DATABASE", "02:00 UTC")
        shown = await cell()
        assert "backups: backups verified on schedule" in shown
        assert 'data-health="green"' in shown
        # Two days with no tick: stale, and the add-on is red.
        env.clock.now += 2 * 86400
        shown = await cell()
        assert "backups: no verified backup within 1.5 schedule intervals" in shown
        assert 'data-health="red"' in shown


def test_no_source_at_all_says_so() -> None:
    found = asyncio.run(read_health(HealthSources(), "shop", [addon("postgres-1", "postgres")]))
    assert found["postgres-1"].note == "no health source configured"
    assert found["postgres-1"].state == "unknown"
