"""Tenants of the shared PostgreSQL and Redis cannot reach, list, wipe or starve each other."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ConnectionError, NoPermissionError

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


@pytest.fixture
async def two_pg(pg_addons: PostgresAddons) -> AsyncIterator[tuple[Provisioned, Provisioned]]:
    a = await pg_addons.create("tiny")
    b = await pg_addons.create("tiny")
    try:
        yield a, b
    finally:
        await pg_addons.destroy(a.resource)
        await pg_addons.destroy(b.resource)


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
            await conn.execute("CREATE TABLE notes (body text)")
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


class TestRedisTenants:
    async def test_a_tenant_reads_and_writes_under_its_prefix(self, two_redis: RedisPair) -> None:
        client_a, _, a, _ = two_redis
        await client_a.set(f"{a.resource}:greeting", "hi")
        assert await client_a.get(f"{a.resource}:greeting") == b"hi"

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
        wrong = aioredis.Redis(host="127.0.0.1", port=6379, username=a.resource, password="nope")
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
