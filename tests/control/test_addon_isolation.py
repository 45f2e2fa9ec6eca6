"""Tenants of the shared PostgreSQL and Redis cannot reach, list, wipe or starve each other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoPermissionError,
    WatchError,
)

from control.addons import Provisioned
from control.addons.plans import PostgresPlan, RedisPlan
from control.addons.postgres import PostgresAddons
from control.addons.redis import RedisAddons
from control.errors import AddonError, Unprocessable
from tests.control.conftest import ADMIN_DSN, REDIS_URL, TEST_PREFIX

# Small limits so the tests hit them quickly.
TEST_PG_PLANS = {"tiny": PostgresPlan(2, "300ms", "10s", "1MB")}


def with_db(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


def user_of(url: str) -> str:
    return url.split("://", 1)[1].split(":", 1)[0]


@pytest.fixture
def pg_addons() -> PostgresAddons:
    return PostgresAddons(
        admin_dsn=ADMIN_DSN,
        public_host="127.0.0.1",
        public_port=5432,
        prefix=TEST_PREFIX,
        plans=TEST_PG_PLANS,
    )


@pytest.fixture(scope="module")
def two_pg() -> Iterator[tuple[Provisioned, Provisioned]]:
    """Two tenants shared by the module's tests: each CREATE/DROP DATABASE costs a checkpoint."""
    addons = PostgresAddons(
        admin_dsn=ADMIN_DSN,
        public_host="127.0.0.1",
        public_port=5432,
        prefix=TEST_PREFIX,
        plans=TEST_PG_PLANS,
    )
    a = asyncio.run(addons.create("tiny"))
    b = asyncio.run(addons.create("tiny"))
    try:
        yield a, b
    finally:
        asyncio.run(addons.destroy(a.resource))
        asyncio.run(addons.destroy(b.resource))


async def admin_scalar(query: str, *args: object) -> object:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        row = await (await conn.execute(query, args)).fetchone()
        return None if row is None else row[0]


class TestPostgresTenants:
    async def test_a_tenant_works_in_its_own_database(
        self, two_pg: tuple[Provisioned, Provisioned]
    ) -> None:
        a, _ = two_pg
        async with await psycopg.AsyncConnection.connect(a.url, autocommit=True) as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS notes (body text)")
            await conn.execute("INSERT INTO notes VALUES ('mine')")
            row = await (await conn.execute("SELECT body FROM notes")).fetchone()
        assert row == ("mine",)

    async def test_a_tenant_cannot_connect_to_another_tenants_database(
        self, two_pg: tuple[Provisioned, Provisioned]
    ) -> None:
        a, b = two_pg
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            await psycopg.AsyncConnection.connect(with_db(a.url, b.resource))

    async def test_a_tenant_cannot_open_more_connections_than_its_plan(
        self, two_pg: tuple[Provisioned, Provisioned]
    ) -> None:
        a, _ = two_pg
        held = [await psycopg.AsyncConnection.connect(a.url) for _ in range(2)]
        try:
            with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
                await psycopg.AsyncConnection.connect(a.url)
        finally:
            for conn in held:
                await conn.close()

    async def test_a_long_query_is_cancelled_by_the_plans_statement_timeout(
        self, two_pg: tuple[Provisioned, Provisioned]
    ) -> None:
        a, _ = two_pg
        async with await psycopg.AsyncConnection.connect(a.url, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.QueryCanceled):
                await conn.execute("SELECT pg_sleep(3)")

    async def test_a_tenant_cannot_lift_its_temp_file_limit(
        self, two_pg: tuple[Provisioned, Provisioned]
    ) -> None:
        a, _ = two_pg
        async with await psycopg.AsyncConnection.connect(a.url, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("SET temp_file_limit = -1")

    async def test_a_tenant_cannot_raise_its_own_connection_limit(
        self, two_pg: tuple[Provisioned, Provisioned]
    ) -> None:
        a, _ = two_pg
        async with await psycopg.AsyncConnection.connect(a.url, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(f'ALTER ROLE "{a.resource}" CONNECTION LIMIT -1')

    async def test_destroy_ends_sessions_and_leaves_no_role_or_database(
        self, pg_addons: PostgresAddons
    ) -> None:
        a = await pg_addons.create("tiny")
        conn = await psycopg.AsyncConnection.connect(a.url, autocommit=True)
        try:
            await pg_addons.destroy(a.resource)
            with pytest.raises(psycopg.OperationalError):
                await conn.execute("SELECT 1")
        finally:
            await conn.close()
        role = await admin_scalar("SELECT 1 FROM pg_roles WHERE rolname = %s", a.resource)
        database = await admin_scalar("SELECT 1 FROM pg_database WHERE datname = %s", a.resource)
        assert (role, database) == (None, None)
        await pg_addons.destroy(a.resource)  # idempotent

    async def test_an_unknown_plan_is_refused_naming_the_plans(
        self, pg_addons: PostgresAddons
    ) -> None:
        with pytest.raises(Unprocessable, match="no postgres plan 'huge' \\(plans: tiny\\)"):
            await pg_addons.create("huge")


@pytest.fixture
def redis_addons() -> RedisAddons:
    return RedisAddons(
        admin_url=REDIS_URL,
        public_host="127.0.0.1",
        public_port=6379,
        prefix=TEST_PREFIX,
        plans={"mini": RedisPlan("25mb")},
    )


@pytest.fixture
async def two_redis(
    redis_addons: RedisAddons,
) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis, Provisioned, Provisioned]]:
    a = await redis_addons.create("mini")
    b = await redis_addons.create("mini")
    client_a = aioredis.Redis.from_url(a.url)
    client_b = aioredis.Redis.from_url(b.url)
    try:
        yield client_a, client_b, a, b
    finally:
        await client_a.aclose()
        await client_b.aclose()
        await redis_addons.destroy(a.resource)
        await redis_addons.destroy(b.resource)


RedisPair = tuple[aioredis.Redis, aioredis.Redis, Provisioned, Provisioned]


async def next_message(pubsub: PubSub, within: float = 10.0) -> dict[str, Any]:
    """The next message (a confirmation too), waited for up to ``within`` seconds.

    Not one get_message with a 1-2 s timeout: on a loaded machine a confirmation could
    come later, be taken for a published message, and fail the test."""
    message: dict[str, Any] | None = None
    async with asyncio.timeout(within):
        while message is None:
            message = await pubsub.get_message(timeout=within)
    return message


class TestRedisTenants:
    async def test_a_tenant_reads_and_writes_under_its_prefix(self, two_redis: RedisPair) -> None:
        client_a, _, a, _ = two_redis
        await client_a.set(f"{a.resource}:greeting", "hi")
        assert await client_a.get(f"{a.resource}:greeting") == b"hi"

    async def test_the_commands_client_libraries_use_still_work(self, two_redis: RedisPair) -> None:
        client_a, _, a, _ = two_redis
        key = f"{a.resource}:".__add__  # key("n") -> "slipway_...:n"
        assert await client_a.incr(key("n")) == 1
        assert await client_a.expire(key("n"), 60)
        assert 0 < await client_a.ttl(key("n")) <= 60
        await client_a.rpush(key("list"), "x", "y")
        assert await client_a.blpop([key("list")], timeout=1) == (key("list").encode(), b"x")
        await client_a.hset(key("hash"), mapping={"f": "v"})
        assert await client_a.hgetall(key("hash")) == {b"f": b"v"}
        await client_a.sadd(key("set"), "m")
        assert await client_a.smembers(key("set")) == {b"m"}
        await client_a.zadd(key("zset"), {"m": 2.0})
        assert await client_a.zrange(key("zset"), 0, -1, withscores=True) == [(b"m", 2.0)]
        await client_a.xgroup_create(key("jobs"), "workers", id="0", mkstream=True)
        await client_a.xadd(key("jobs"), {"job": "1"})
        read = await client_a.xreadgroup("workers", "w1", {key("jobs"): ">"}, count=1)
        entry_id = read[0][1][0][0]
        assert await client_a.xack(key("jobs"), "workers", entry_id) == 1
        assert await client_a.execute_command("SELECT", 0)  # type: ignore[no-untyped-call]
        assert await client_a.client_setname("web.1")
        assert await client_a.client_getname() == "web.1"
        assert await client_a.ping()

    async def test_a_transaction_with_watch_commits_and_aborts_as_usual(
        self, two_redis: RedisPair
    ) -> None:
        client_a, _, a, _ = two_redis
        key = f"{a.resource}:balance"
        await client_a.set(key, 10)
        async with client_a.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            pipe.multi()
            pipe.decrby(key, 3)
            assert await pipe.execute() == [7]
        async with client_a.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            await client_a.set(key, 0)  # a concurrent write aborts the transaction
            pipe.multi()
            pipe.decrby(key, 3)
            with pytest.raises(WatchError):
                await pipe.execute()

    async def test_a_tenant_receives_its_own_messages_by_channel_and_by_its_prefix_pattern(
        self, two_redis: RedisPair
    ) -> None:
        client_a, _, a, _ = two_redis
        pubsub = client_a.pubsub()
        try:
            await pubsub.subscribe(f"{a.resource}:events")
            # Patterns are checked literally against the ACL: the prefix pattern itself.
            await pubsub.psubscribe(f"{a.resource}:*")
            for _ in range(2):  # the two confirmations, read before the messages come
                assert (await next_message(pubsub))["type"] in ("subscribe", "psubscribe")
            assert await client_a.publish(f"{a.resource}:events", "hello") == 2
            kinds = set()
            for _ in range(2):
                message = await next_message(pubsub)
                assert message["data"] == b"hello"
                kinds.add(message["type"])
            assert kinds == {"message", "pmessage"}
        finally:
            await pubsub.aclose()

    async def test_a_resp3_client_connects_with_hello(self, two_redis: RedisPair) -> None:
        _, _, a, _ = two_redis
        client = aioredis.Redis.from_url(a.url, protocol=3)
        try:
            await client.set(f"{a.resource}:resp3", "ok")
            assert await client.get(f"{a.resource}:resp3") == b"ok"
        finally:
            await client.aclose()

    async def test_a_tenant_cannot_read_or_write_another_tenants_keys(
        self, two_redis: RedisPair
    ) -> None:
        client_a, client_b, _, b = two_redis
        await client_b.set(f"{b.resource}:secret", "b's")
        with pytest.raises(NoPermissionError):
            await client_a.get(f"{b.resource}:secret")
        with pytest.raises(NoPermissionError):
            await client_a.set(f"{b.resource}:secret", "overwritten")
        with pytest.raises(NoPermissionError):
            await client_a.delete(f"{b.resource}:secret")
        assert await client_b.get(f"{b.resource}:secret") == b"b's"

    async def test_a_tenant_cannot_write_outside_any_prefix(self, two_redis: RedisPair) -> None:
        client_a, _, _, _ = two_redis
        with pytest.raises(NoPermissionError):
            await client_a.set("unprefixed", "x")

    @pytest.mark.parametrize(
        "command",
        [
            ("KEYS", "*"),
            ("SCAN", "0"),
            ("RANDOMKEY",),
            ("DBSIZE",),
            ("FLUSHALL",),
            ("FLUSHDB",),
            ("CONFIG", "GET", "*"),
            ("ACL", "LIST"),
            ("CLIENT", "LIST"),
            ("INFO",),
            ("SWAPDB", "0", "1"),
            ("SLOWLOG", "GET"),
            ("SHUTDOWN",),
        ],
    )
    async def test_commands_that_list_wipe_or_administer_the_server_are_denied(
        self, two_redis: RedisPair, command: tuple[str, ...]
    ) -> None:
        client_a, _, _, _ = two_redis
        with pytest.raises(NoPermissionError):
            await client_a.execute_command(*command)

    async def test_a_tenant_cannot_publish_on_another_tenants_channel(
        self, two_redis: RedisPair
    ) -> None:
        client_a, _, a, b = two_redis
        assert await client_a.publish(f"{a.resource}:events", "ok") == 0
        with pytest.raises(NoPermissionError):
            await client_a.publish(f"{b.resource}:events", "spoofed")

    async def test_a_wrong_password_is_refused(self, two_redis: RedisPair) -> None:
        _, _, a, _ = two_redis
        wrong = aioredis.Redis(
            host="127.0.0.1",
            port=6379,
            username=a.resource,
            password="nope",
            retry=Retry(NoBackoff(), 0),  # a refusal is final; no retries to wait out
        )
        try:
            with pytest.raises(AuthenticationError):
                await wrong.ping()
        finally:
            await wrong.aclose()

    async def test_destroy_removes_the_user_its_keys_and_its_connections(
        self, redis_addons: RedisAddons
    ) -> None:
        a = await redis_addons.create("mini")
        client = aioredis.Redis.from_url(a.url, retry_on_error=[], retry=None)
        admin = aioredis.Redis.from_url(REDIS_URL)
        try:
            for i in range(1200):  # more than one SCAN batch
                await client.set(f"{a.resource}:k{i}", i)
            await redis_addons.destroy(a.resource)
            assert await admin.acl_getuser(a.resource) is None
            assert await admin.exists(f"{a.resource}:k0", f"{a.resource}:k1199") == 0
            with pytest.raises((ConnectionError, AuthenticationError)):
                await client.get(f"{a.resource}:k0")
        finally:
            await client.aclose()
            await admin.aclose()
        await redis_addons.destroy(a.resource)  # idempotent


class TestEnsure:
    async def test_a_redis_user_lost_with_a_restart_comes_back_with_its_password(
        self, redis_addons: RedisAddons
    ) -> None:
        a = await redis_addons.create("mini")
        admin = aioredis.Redis.from_url(REDIS_URL)
        try:
            await admin.set(f"{a.resource}:kept", "yes")
            await admin.acl_deluser(a.resource)  # what a Redis restart without aclfile does
            await redis_addons.ensure(a.resource, url=a.url, plan="mini")
            client = aioredis.Redis.from_url(a.url)
            try:
                assert await client.get(f"{a.resource}:kept") == b"yes"
                with pytest.raises(NoPermissionError):
                    await client.keys("*")
            finally:
                await client.aclose()
        finally:
            await admin.aclose()
            await redis_addons.destroy(a.resource)

    async def test_a_postgres_role_gets_its_plans_current_limits(
        self, pg_addons: PostgresAddons
    ) -> None:
        a = await pg_addons.create("tiny")
        try:
            raised = PostgresAddons(
                admin_dsn=ADMIN_DSN,
                public_host="127.0.0.1",
                public_port=5432,
                prefix=TEST_PREFIX,
                plans={"tiny": PostgresPlan(3, "1s", "10s", "1MB")},
            )
            await raised.ensure(a.resource, url=a.url, plan="tiny")
            limit = await admin_scalar(
                "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", a.resource
            )
            assert limit == 3
        finally:
            await pg_addons.destroy(a.resource)

    async def test_a_lost_postgres_role_is_reported_not_recreated(
        self, pg_addons: PostgresAddons
    ) -> None:
        a = await pg_addons.create("tiny")
        await pg_addons.destroy(a.resource)
        with pytest.raises(AddonError, match="is gone from its server"):
            await pg_addons.ensure(a.resource, url=a.url, plan="tiny")
        assert await admin_scalar("SELECT 1 FROM pg_roles WHERE rolname = %s", a.resource) is None

    async def test_a_postgres_role_and_the_servers_databases_are_fenced_again(
        self, pg_addons: PostgresAddons
    ) -> None:
        """An operator's slip (GRANT CONNECT ... TO PUBLIC, ALTER ROLE ... CREATEDB) is undone."""
        a = await pg_addons.create("tiny")
        try:
            async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as admin:
                await admin.execute("GRANT CONNECT ON DATABASE template1 TO PUBLIC")
                await admin.execute(f'ALTER ROLE "{a.resource}" CREATEDB')
            await pg_addons.ensure(a.resource, url=a.url, plan="tiny")
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                await psycopg.AsyncConnection.connect(with_db(a.url, "template1"))
            createdb = await admin_scalar(
                "SELECT rolcreatedb FROM pg_roles WHERE rolname = %s", a.resource
            )
            assert createdb is False
        finally:
            await pg_addons.destroy(a.resource)
