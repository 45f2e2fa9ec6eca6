"""Dedicated Redis add-ons under ``slipway up``: one real redis-server per add-on, agent-run.

The isolation a shared server cannot give: each instance has its own
maxmemory, so one app filling its Redis gets OOM errors while another's
still takes writes, and one app's password does not open another's instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, OutOfMemoryError

from control.addons.dedicated import APP_PREFIX, DedicatedRedis, definition, redis_command
from control.addons.plans import DEDICATED_REDIS_PLANS
from control.addons.redis import RedisAddons
from control.agent_target import LocalAgent
from control.errors import AddonError, Unprocessable
from control.settings import AddonServers
from control.up import Up
from exporters.targets import Kind, Limits, load_targets
from tests.agent.conftest import ListSink
from tests.control.conftest import ADMIN_TOKEN, REDIS_URL, TEST_PREFIX, up_settings

PLAN = DEDICATED_REDIS_PLANS["dedicated"]


class World:
    def __init__(self, up: Up, session: aiohttp.ClientSession, targets: Path) -> None:
        assert up.control is not None
        self.up = up
        self.session = session
        self.targets = targets
        self.base = f"http://127.0.0.1:{up.control.port}"

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as response:
            return response.status, await response.json()

    async def redis_url(self, app: str) -> str:
        status, config = await self.call("GET", f"/apps/{app}/config-vars")
        assert status == 200
        url: str = config["REDIS_URL"]
        return url


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    sink = ListSink()
    targets = tmp_path / "targets"
    up = Up(
        up_settings(tmp_path / "state", exporter_targets_dir=str(targets)),
        app_sink=sink,
        router_sink=sink,
    )
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(up, session, targets)
        assert not up.failed.is_set()
    finally:
        await session.close()
        await up.stop()


async def fill(url: str) -> int:
    """Write 64 KB values until the instance refuses one; the bytes written before it did."""
    client = aioredis.Redis.from_url(url)
    written = 0
    try:
        block = b"x" * 65536
        for n in range(4 * PLAN.maxmemory_bytes // len(block)):
            try:
                await client.set(f"k{n}", block)
            except OutOfMemoryError:
                return written
            written += len(block)
        raise AssertionError(f"{written} bytes written and no OOM")
    finally:
        await client.aclose()


def command_lines() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                continue  # ended meanwhile
    return found


async def server_pid(client: aioredis.Redis) -> int:
    return int((await client.info("server"))["process_id"])


async def port_closed(host: str, port: int, within: float) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            return True
        writer.close()
        await asyncio.sleep(0.05)
    return False


def test_the_definition_caps_memory_never_sleeps_and_keeps_the_password_off_argv() -> None:
    command = redis_command(PLAN)
    assert f"--maxmemory {64 * 1024 * 1024}" in command
    assert "--maxmemory-policy noeviction" in command
    assert "--port $PORT" in command
    found = definition(PLAN, "s3cret")
    assert "s3cret" not in found["processes"]["web"]["command"]
    assert found["env"] == {"REDIS_PASSWORD": "s3cret"}
    assert found["hosts"] == []  # never routed
    assert found["policy"]["never_sleep"] is True


async def test_dedicated_instances_isolate_memory_and_passwords(world: World) -> None:
    for app in ("alpha", "beta"):
        assert (await world.call("POST", "/apps", {"name": app}))[0] == 201
        status, addon = await world.call("POST", f"/apps/{app}/addons", {"plan": "redis:dedicated"})
        assert status == 201, addon
    url_a, url_b = await world.redis_url("alpha"), await world.redis_url("beta")
    a, b = urlsplit(url_a), urlsplit(url_b)
    assert a.port != b.port  # two redis-servers, not one
    assert a.password != b.password
    assert a.password is not None
    assert not [c for c in command_lines() if a.password in c]  # not in any process's argv
    for url in (url_a, url_b):
        client = aioredis.Redis.from_url(url)
        info = await client.config_get("maxmemory")
        await client.aclose()
        assert info == {"maxmemory": str(PLAN.maxmemory_bytes)}

    written = await fill(url_a)  # alpha fills its instance to maxmemory: OOM
    assert written > PLAN.maxmemory_bytes // 2
    beta = aioredis.Redis.from_url(url_b)
    try:
        assert await beta.set("still", b"y" * 65536)  # beta's instance still takes writes
        assert len(await beta.get("still") or b"") == 65536
    finally:
        await beta.aclose()

    wrong = aioredis.Redis.from_url(url_b.replace(str(b.password), str(a.password)))
    try:
        with pytest.raises(AuthenticationError):
            await wrong.ping()
    finally:
        await wrong.aclose()

    # The exporters see each instance as a server target of its own, with its memory cap.
    found = load_targets(world.targets / "redis-targets.toml", kind=Kind.REDIS)
    assert sorted(dict(t.labels)["app"] for t in found) == ["alpha", "beta"]
    assert {t.limits for t in found} == {
        Limits(connections=PLAN.maxclients, memory_bytes=PLAN.maxmemory_bytes)
    }
    assert {t.dsn for t in found} == {url_a, url_b}

    _, addons = await world.call("GET", "/apps/alpha/addons")
    status, _ = await world.call("DELETE", f"/apps/alpha/addons/{addons[0]['name']}")
    assert status == 200
    assert a.hostname is not None
    assert a.port is not None
    assert await port_closed(a.hostname, a.port, within=10.0)  # the process stopped
    assert "REDIS_URL" not in (await world.call("GET", "/apps/alpha/config-vars"))[1]
    _, releases = await world.call("GET", "/apps/alpha/releases")
    assert releases[-1]["description"].startswith("Detach REDIS")
    assert len([app for app in world.up.agent.machines if app.startswith(APP_PREFIX)]) == 1


async def test_shared_and_dedicated_plans_are_one_service_and_a_slow_start_leaves_nothing(
    world: World,
) -> None:
    link = LocalAgent(world.up.agent)
    shared = RedisAddons(
        admin_url=REDIS_URL, public_host="127.0.0.1", public_port=6379, prefix=TEST_PREFIX
    )
    both = DedicatedRedis(link, shared=shared)
    assert list(both.plans) == ["mini", "basic", "dedicated", "shared", "shared-basic"]
    tenant = await both.create("shared")  # the shared server's ACL user, not an instance
    try:
        assert tenant.resource.startswith(TEST_PREFIX)
        assert urlsplit(tenant.url).port == 6379
    finally:
        await both.destroy(tenant.resource)

    own = await both.create("dedicated")
    await both.ensure(own.resource, url=own.url, plan="dedicated")  # running: nothing to do
    await world.up.agent.forget(own.resource)  # the agent lost it (a restart of slipway up)
    with pytest.raises(AddonError, match="listens on"):  # redefined, on a fresh port
        await both.ensure(own.resource, url=own.url, plan="dedicated")
    await both.destroy(own.resource)

    hasty = DedicatedRedis(link, ready_timeout=0.0)
    with pytest.raises(AddonError, match="not ready"):
        await hasty.create("dedicated")
    assert [app for app in world.up.agent.machines if app.startswith(APP_PREFIX)] == []


@pytest.mark.parametrize("plan", ["redis", "heroku-redis", "heroku-redis:mini"])
async def test_a_bare_or_heroku_redis_is_an_instance_of_its_own_where_queues_work(
    world: World, plan: str
) -> None:
    """What Heroku apps ask for gets a dedicated instance: any key name and Lua work, as the
    queue libraries need them (RQ's ``rq:queue:*``, its Lua-scripted job moves)."""
    assert (await world.call("POST", "/apps", {"name": "queued"}))[0] == 201
    status, addon = await world.call("POST", "/apps/queued/addons", {"plan": plan})
    assert status == 201, addon
    assert addon["plan"]["name"] == "redis:mini"
    url = await world.redis_url("queued")
    assert urlsplit(url).port != 6379  # not the shared server
    client = aioredis.Redis.from_url(url)
    try:
        assert await client.rpush("rq:queue:default", "job-1") == 1
        assert await client.eval("return redis.call('llen', KEYS[1])", 1, "rq:queue:default") == 1
        mini = DEDICATED_REDIS_PLANS["mini"]
        assert await client.config_get("maxmemory") == {"maxmemory": str(mini.maxmemory_bytes)}
    finally:
        await client.aclose()


async def test_the_shared_plan_is_there_by_explicit_choice_and_fences_keys(
    tmp_path: Path,
) -> None:
    """With a shared server configured, ``redis:shared`` is a prefix-fenced user: the key
    names RQ uses are refused, which is why it is never the default."""
    up = Up(
        up_settings(tmp_path / "state", addons=AddonServers(redis_admin_url=REDIS_URL)),
        app_sink=ListSink(),
        router_sink=ListSink(),
        addon_prefix=TEST_PREFIX,
    )
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        world = World(up, session, tmp_path / "targets")
        assert (await world.call("POST", "/apps", {"name": "fenced"}))[0] == 201
        status, addon = await world.call("POST", "/apps/fenced/addons", {"plan": "redis:shared"})
        assert status == 201, addon
        client = aioredis.Redis.from_url(await world.redis_url("fenced"))
        try:
            with pytest.raises(NoPermissionError):
                await client.rpush("rq:queue:default", "job-1")
        finally:
            await client.aclose()
        assert (await world.call("DELETE", f"/apps/fenced/addons/{addon['name']}"))[0] == 200
    finally:
        await session.close()
        await up.stop()


async def test_a_plan_change_moves_the_running_instances_caps_and_keeps_its_keys(
    world: World,
) -> None:
    """At once, as Heroku's: the same redis-server (pid, connection, keys) under the new
    caps, the agent's definition on the new line, the exporters' targets on the new limits."""
    assert (await world.call("POST", "/apps", {"name": "gamma"}))[0] == 201
    status, addon = await world.call("POST", "/apps/gamma/addons", {"plan": "redis:mini"})
    assert status == 201, addon
    url = await world.redis_url("gamma")
    resource = next(app for app in world.up.agent.machines if app.startswith(APP_PREFIX))
    basic = DEDICATED_REDIS_PLANS["basic"]
    client = aioredis.Redis.from_url(url, single_connection_client=True)
    try:
        await client.set("kept", "yes")
        pid, connection = await server_pid(client), await client.client_id()
        status, moved = await world.call(
            "PATCH", f"/apps/gamma/addons/{addon['name']}", {"plan": "basic"}
        )
        assert status == 200, moved
        assert (moved["plan"]["name"], "release" in moved, "message" in moved) == (
            "redis:basic",
            False,
            False,
        )
        assert await client.config_get("maxmemory") == {"maxmemory": str(basic.maxmemory_bytes)}
        assert await client.config_get("maxclients") == {"maxclients": str(basic.maxclients)}
        assert await client.get("kept") == b"yes"
        assert (await server_pid(client), await client.client_id()) == (pid, connection)
    finally:
        await client.aclose()
    assert await world.redis_url("gamma") == url  # same instance, same URL
    # The agent's next start of it (a crash) takes the new plan's line, not the old one.
    command = world.up.agent.machines[resource].config.processes["web"].command
    assert f"--maxmemory {basic.maxmemory_bytes} " in command
    assert f"--maxclients {basic.maxclients} " in command
    (target,) = [
        t
        for t in load_targets(world.targets / "redis-targets.toml", kind=Kind.REDIS)
        if dict(t.labels)["app"] == "gamma"
    ]
    assert target.limits == Limits(connections=basic.maxclients, memory_bytes=basic.maxmemory_bytes)

    # Across a shared server and an instance there is no in-place move, either way.
    both = DedicatedRedis(
        LocalAgent(world.up.agent),
        shared=RedisAddons(
            admin_url=REDIS_URL, public_host="127.0.0.1", public_port=6379, prefix=TEST_PREFIX
        ),
    )
    resource = next(app for app in world.up.agent.machines if app.startswith(APP_PREFIX))
    with pytest.raises(Unprocessable, match="redis:shared is on the shared server, this add-on"):
        await both.resize(resource, app="gamma", url=url, plan="basic", to="shared")
    with pytest.raises(Unprocessable, match="redis:mini is on a dedicated instance, this add-on"):
        await both.resize("slipway_x", app="gamma", url=url, plan="shared", to="mini")
    assert resource in world.up.agent.machines  # untouched


async def test_a_downgrade_below_what_the_instance_holds_is_refused_naming_both(
    world: World,
) -> None:
    """Heroku's rule: the data must fit the smaller plan; nothing changes until it does."""
    assert (await world.call("POST", "/apps", {"name": "delta"}))[0] == 201
    status, addon = await world.call("POST", "/apps/delta/addons", {"plan": "redis:basic"})
    assert status == 201, addon
    mini = DEDICATED_REDIS_PLANS["mini"]
    basic = DEDICATED_REDIS_PLANS["basic"]
    client = aioredis.Redis.from_url(await world.redis_url("delta"))
    try:
        block = b"x" * 65536
        async with client.pipeline(transaction=False) as pipe:
            for n in range(2 * mini.maxmemory_bytes // len(block)):  # twice what mini holds
                pipe.set(f"k{n}", block)
            await pipe.execute()
        used = int((await client.info("memory"))["used_memory"])
        assert used > mini.maxmemory_bytes
        path = f"/apps/delta/addons/{addon['name']}"
        status, refused = await world.call("PATCH", path, {"plan": "mini"})
        assert (status, refused["id"]) == (422, "plan_too_small"), refused
        assert f"{mini.maxmemory_bytes} bytes" in refused["message"]
        assert "MB" in refused["message"]
        assert "stay on redis:basic" in refused["message"]
        assert await client.config_get("maxmemory") == {"maxmemory": str(basic.maxmemory_bytes)}
        assert await client.exists("k0") == 1
        _, addons = await world.call("GET", "/apps/delta/addons")
        assert addons[0]["plan"]["name"] == "redis:basic"

        await client.flushall()  # now it fits
        status, moved = await world.call("PATCH", path, {"plan": "mini"})
        assert (status, moved["plan"]["name"]) == (200, "redis:mini"), moved
        assert await client.config_get("maxmemory") == {"maxmemory": str(mini.maxmemory_bytes)}
    finally:
        await client.aclose()


async def test_caps_that_cannot_be_set_live_restart_the_instance_and_the_answer_says_so(
    world: World,
) -> None:
    assert (await world.call("POST", "/apps", {"name": "eps"}))[0] == 201
    status, addon = await world.call("POST", "/apps/eps/addons", {"plan": "redis:mini"})
    assert status == 201, addon
    url = await world.redis_url("eps")
    client = aioredis.Redis.from_url(url)
    try:
        await client.set("lost", "yes")
        before = await server_pid(client)
        # The app took CONFIG away from its own default user: the caps cannot be set live.
        await client.execute_command("ACL", "SETUSER", "default", "-config")
    finally:
        await client.aclose()
    status, moved = await world.call(
        "PATCH", f"/apps/eps/addons/{addon['name']}", {"plan": "basic"}
    )
    assert status == 200, moved
    assert "NoPermissionError" in moved["message"]
    assert "restarted" in moved["message"]
    assert "keys are gone" in moved["message"]
    fresh = await world.redis_url("eps")  # the app's config var: the new port
    assert fresh != url
    assert urlsplit(fresh).password == urlsplit(url).password
    client = aioredis.Redis.from_url(fresh)
    try:
        basic = DEDICATED_REDIS_PLANS["basic"]
        assert await client.config_get("maxmemory") == {"maxmemory": str(basic.maxmemory_bytes)}
        assert await client.get("lost") is None
        assert await server_pid(client) != before
    finally:
        await client.aclose()
    _, audit = await world.call("GET", "/apps/eps/audit")
    assert any("restarted" in str(entry) for entry in audit), audit
