"""The add-ons' health on the app page, read from a real exporter's /probe on loopback
(docs/dashboard.md, "Add-on health"): a Postgres add-on's series and their thresholds, its
connections against its plan's limit in both of control's targets shapes, an exporter that
never answers costing the page at most the deadline, and no source at all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from control.cli import main
from control.dashboard.addon_health import (
    AMBER,
    DEADLINE,
    AddonHealth,
    Check,
    parse_samples,
    postgres_checks,
    render,
)
from exporters.service import Exporter
from exporters.settings import ExporterSettings
from exporters.targets import Kind
from kit.runner import supervise
from tests.conftest import free_port
from tests.control.conftest import ADMIN_DSN
from tests.control.server import Server, cli_runner, control_server
from tests.exporters.conftest import next_round
from tests.helpers import eventually

PASSWORD = "a-long-enough-password"


def api(server: Server, method: str, path: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read() or b"null")


def prepare(server: Server, config: Path) -> dict[str, Any]:
    """An app with a Postgres and a Redis add-on, and a collaborator on it."""
    api(server, "POST", "/apps", {"name": "shop"})
    pg = api(server, "POST", "/apps/shop/addons", {"plan": "postgres:mini"})
    cache = api(
        server, "POST", "/apps/shop/addons", {"plan": "redis:shared", "attachment": "CACHE"}
    )
    made = cli_runner(server, config).invoke(
        main, ["users:create", "collab", "--app", "shop", "--password", PASSWORD]
    )
    assert made.exit_code == 0, made.output
    return {"postgres": pg, "redis": cache}


@pytest.fixture
def silent_exporter() -> Iterator[int]:
    """A port that accepts connections and never answers: an exporter that hangs."""

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


async def sign_in(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(f"{base}/dashboard/login") as reply:
        match = re.search(r'name="csrf" value="([^"]+)"', await reply.text())
        assert match is not None
    form = {"user": "collab", "password": PASSWORD, "csrf": match.group(1)}
    async with session.post(f"{base}/dashboard/login", data=form) as reply:
        assert reply.status == 200


def health_cell(page: str, addon: str) -> str:
    row = re.search(rf'<th scope="row">{re.escape(addon)}</th>.*?</tr>', page, re.S)
    assert row is not None, page
    cell = re.search(r'<td class="addon-health"[^>]*>(.*?)</td>', row.group(0), re.S)
    assert cell is not None
    return cell.group(1)


def overall(cell: str) -> str:
    found = re.search(r'data-health="(\w+)"', cell)
    assert found is not None, cell
    return found.group(1)


def started(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Server, dict[str, Any]]]:
    """A control server (its own process; stopped outside the event loop) with the add-ons."""
    (tmp_path / "control").mkdir()
    with control_server(tmp_path / "control", extra_env=env) as server:
        yield server, prepare(server, tmp_path / "config")


@pytest.fixture
def exporter_port() -> int:
    return free_port()


@pytest.fixture
def with_exporter(tmp_path: Path, exporter_port: int) -> Iterator[tuple[Server, dict[str, Any]]]:
    env = {"SLIPWAY_EXPORTER_POSTGRES_URL": f"http://127.0.0.1:{exporter_port}"}
    yield from started(tmp_path, env)


@contextlib.asynccontextmanager
async def postgres_exporter(tmp_path: Path, port: int) -> AsyncIterator[Exporter]:
    """The real Postgres exporter on loopback, polling the targets file control writes.

    Its rounds come when a check asks for one (``next_round``): with a round every 0.3 s
    and a timeout below that, a loaded machine missed polls, and each miss backed the
    add-on off for longer. A poll that must succeed gets 15 s here."""
    exporter = Exporter(
        ExporterSettings(
            kind=Kind.POSTGRES,
            targets_file=tmp_path / "control" / "exporters" / "postgres-targets.toml",
            port=port,
            interval=60.0,
            timeout=15.0,
        )
    )
    stop = asyncio.Event()
    task = asyncio.ensure_future(supervise(exporter.serve, stop=stop))
    try:
        yield exporter
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def exporter_world(
    tmp_path: Path, exporter_port: int, with_exporter: tuple[Server, dict[str, Any]]
) -> AsyncIterator[tuple[Server, dict[str, Any], Exporter]]:
    async with postgres_exporter(tmp_path, exporter_port) as exporter:
        yield (*with_exporter, exporter)


@pytest.fixture
def hanging_world(tmp_path: Path, silent_exporter: int) -> Iterator[tuple[Server, dict[str, Any]]]:
    env = {
        "SLIPWAY_EXPORTER_POSTGRES_URL": f"http://127.0.0.1:{silent_exporter}",
        "SLIPWAY_EXPORTER_REDIS_URL": f"http://127.0.0.1:{silent_exporter}",
    }
    yield from started(tmp_path, env)


async def test_a_postgres_addons_health_comes_from_the_exporter_and_goes_amber_when_idle_in_tx(
    exporter_world: tuple[Server, dict[str, Any], Exporter],
) -> None:
    server, addons, exporter = exporter_world
    pg, cache = addons["postgres"]["name"], addons["redis"]["name"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await sign_in(session, server.url)

        async def page() -> str:
            async with session.get(f"{server.url}/dashboard/apps/shop") as reply:
                assert reply.status == 200
                return await reply.text()

        async def fresh_page() -> str:
            next_round(exporter)  # this page, or one of the next checks', shows the news
            return await page()

        async def pg_read() -> bool:
            return "connections:" in health_cell(await fresh_page(), pg)

        await eventually(pg_read, interval=0.1)
        cell = health_cell(await page(), pg)
        assert "idle in transaction: 0" in cell
        assert "long-running queries: 0" in cell
        assert re.search(r"connections: \d+%", cell)
        # No Redis exporter is configured and no Prometheus either.
        assert "no health source configured" in health_cell(await page(), cache)

        # A session left idle in a transaction turns the add-on amber, as the docs say.
        config = api(server, "GET", "/apps/shop/config-vars")
        url = config["DATABASE_URL"]
        with psycopg.connect(url) as conn:
            conn.execute("SELECT 1")  # a transaction is open, and stays idle

            async def amber() -> bool:
                found = health_cell(await fresh_page(), pg)
                return "idle in transaction: 1" in found and overall(found) == AMBER

            await eventually(amber, interval=0.1)
            conn.rollback()

        async def cleared() -> bool:
            return "idle in transaction: 0" in health_cell(await fresh_page(), pg)

        await eventually(cleared, interval=0.1)


#: The variable naming the monitoring DSN in the exporter's environment (this process's).
MONITOR_ENV = "ADDFIX_TEST_PG_MONITOR_DSN"


@pytest.fixture(params=["own-dsn", "monitoring-dsn"])
def targets_control(
    request: pytest.FixtureRequest, tmp_path: Path, exporter_port: int
) -> Iterator[tuple[str, Server, dict[str, Any]]]:
    """Control writing either targets shape: without a monitoring DSN each add-on is polled
    with its own (``slipway up``'s default), with one it is a database target of the shared
    server's (the variable is set in this process, where the exporter runs)."""
    env = {"SLIPWAY_EXPORTER_POSTGRES_URL": f"http://127.0.0.1:{exporter_port}"}
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "monitoring-dsn":
            env["SLIPWAY_EXPORTER_POSTGRES_DSN_ENV"] = MONITOR_ENV
            patch.setenv(MONITOR_ENV, ADMIN_DSN)
        for server, addons in started(tmp_path, env):
            yield request.param, server, addons


@pytest.fixture
async def targets_world(
    tmp_path: Path, exporter_port: int, targets_control: tuple[str, Server, dict[str, Any]]
) -> AsyncIterator[tuple[str, Server, dict[str, Any], Exporter]]:
    """The real exporter polling the targets file control wrote."""
    async with postgres_exporter(tmp_path, exporter_port) as exporter:
        yield (*targets_control, exporter)


async def test_connections_are_measured_against_the_plans_limit(
    targets_world: tuple[str, Server, dict[str, Any], Exporter],
) -> None:
    """4 connections held on a ``postgres:mini`` add-on (5 allowed) read as 4 of 5, not as
    a share of the server's max_connections. Polled with the add-on's own DSN, the
    exporter's kept connection is a fifth of the role's: the page says 100 %, red, and the
    app indeed cannot open another."""
    mode, server, addons, exporter = targets_world
    pg = addons["postgres"]["name"]
    written = (server.stderr.parent / "exporters" / "postgres-targets.toml").read_text()
    assert "limits = { connections = 5 }" in written
    url = api(server, "GET", "/apps/shop/config-vars")["DATABASE_URL"]
    held = 4
    expected, state = ("100%", "red") if mode == "own-dsn" else ("80%", "green")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await sign_in(session, server.url)

        async def connections() -> str | None:
            next_round(exporter)  # this check, or one of the next, shows the news
            async with session.get(f"{server.url}/dashboard/apps/shop") as reply:
                cell = health_cell(await reply.text(), pg)
            found = re.search(r'<li class="health (\w+)">connections: (\d+%)', cell)
            return f"{found.group(2)} {found.group(1)}" if found else None

        # The exporter has polled (and, with the add-on's own DSN, holds its connection).
        await eventually(connections, interval=0.1)
        conns = [await psycopg.AsyncConnection.connect(url) for _ in range(held)]
        try:

            async def as_expected() -> bool:
                return await connections() == f"{expected} {state}"

            await eventually(as_expected, interval=0.1)
            if mode == "own-dsn":
                with pytest.raises(psycopg.OperationalError, match="too many connections"):
                    await psycopg.AsyncConnection.connect(url)
        finally:
            for conn in conns:
                await conn.close()


#: What the app page costs besides its health reads (sign-in check, a few reads of the local
#: store, a render): a few ms when idle, 0.6 s seen at load 10 on 2 cores, and CI's runner
#: is slower still. Far below what it must beat: without the deadline a silent exporter
#: holds the page for aiohttp's default of 5 minutes.
PAGE_MARGIN = 2.0


async def test_an_exporter_that_never_answers_costs_the_page_at_most_the_deadline(
    hanging_world: tuple[Server, dict[str, Any]],
) -> None:
    """docs/dashboard.md: every read of one page shares DEADLINE; an exporter that hangs
    costs the page at most that, and its add-ons say they had no answer within it."""
    server, addons = hanging_world
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await sign_in(session, server.url)
        took = []
        for _ in range(5):
            started = time.perf_counter()
            async with session.get(f"{server.url}/dashboard/apps/shop") as reply:
                assert reply.status == 200
                text = await reply.text()
            took.append(time.perf_counter() - started)
    print(f"page times with a hanging exporter: {[round(t * 1000) for t in took]} ms")
    for addon in addons.values():
        cell = health_cell(text, addon["name"])
        assert f"no answer within {DEADLINE * 1000:.0f} ms" in cell
        assert overall(cell) == "unknown"
    assert max(took) < DEADLINE + PAGE_MARGIN, took
    assert sorted(took)[2] >= DEADLINE, took  # it did wait for the exporter
    # That the reads wait together, not in turn, is shown with ten add-ons in
    # test_addon_health_sources.py, where the margin is five deadlines, not a few ms.


def test_the_health_cell_escapes_what_it_shows() -> None:
    shown = render(AddonHealth("exporter", (Check("<b>x</b>", "1 & 2", AMBER),), note='"><script>'))
    assert "<script>" not in shown
    assert "<b>" not in shown
    assert "&lt;b&gt;x&lt;/b&gt;: 1 &amp; 2" in shown
    assert 'data-health="amber"' in shown


@pytest.mark.parametrize(
    ("series", "value", "state"),
    [
        ("slipway_pg_connections_used_ratio", 0.80, "green"),
        ("slipway_pg_connections_used_ratio", 0.81, "amber"),
        ("slipway_pg_connections_used_ratio", 0.96, "red"),
        ("slipway_pg_long_running_queries", 1, "amber"),
        ("slipway_pg_waiting_queries", 2, "amber"),
        ("slipway_pg_database_size_plan_ratio", 0.80, "amber"),
        ("slipway_pg_database_size_plan_ratio", 0.91, "red"),
        ("slipway_pg_cache_hit_ratio", 0.95, "amber"),
        ("pg_up", 0, "red"),
    ],
)
def test_postgres_thresholds_are_the_documented_ones(series: str, value: float, state: str) -> None:
    """docs/dashboard.md's table, on either side of each boundary (an exposition as the
    exporter writes it, one value per database: the worst counts)."""
    other = 1.0 if series in {"pg_up", "slipway_pg_cache_hit_ratio"} else 0.0
    text = (
        f"# TYPE {series} gauge\n"
        f'{series}{{datname="a",target="t"}} {value}\n'
        f'{series}{{datname="b",target="t"}} {other}\n'
    )
    health = AddonHealth("exporter", tuple(postgres_checks(parse_samples(text, [series]))))
    assert health.state == state
