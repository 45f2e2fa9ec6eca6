"""Attacks by one tenant of a shared add-on server on the others, and the refusals.

Each test is written from the attacker's side: tenant A holds only its own
``REDIS_URL`` or ``DATABASE_URL`` (what its app's environment gives it) and
tries to read, list, rewrite, wipe or starve tenant B, or to lift its plan.
Real servers on loopback; every user, role and database is made with a random
name and removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from control.addons import Provisioned
from control.addons.plans import PostgresPlan, RedisPlan
from control.addons.postgres import PostgresAddons
from control.addons.redis import RedisAddons
from tests.control.conftest import ADMIN_DSN, REDIS_URL, TEST_PREFIX


@dataclass
class Tenants:
    a: Provisioned
    b: Provisioned
    #: A's client, authenticated as A with A's password.
    client: aioredis.Redis
    #: The server's admin: asks ACL DRYRUN before an attack is sent for real.
    admin: aioredis.Redis

    def key(self, tenant: Provisioned, name: str) -> str:
        return f"{tenant.resource}:{name}"


@pytest.fixture
async def tenants() -> AsyncIterator[Tenants]:
    addons = RedisAddons(
        admin_url=REDIS_URL,
        public_host="127.0.0.1",
        public_port=6379,
        prefix=TEST_PREFIX,
        plans={"mini": RedisPlan("25mb")},
    )
    a = await addons.create("mini")
    b = await addons.create("mini")
    client = aioredis.Redis.from_url(a.url, socket_timeout=5)
    admin = aioredis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        yield Tenants(a, b, client, admin)
    finally:
        await client.aclose()
        await admin.aclose()
        await addons.destroy(a.resource)
        await addons.destroy(b.resource)


async def denied_by_acl(tenants: Tenants, *command: str | int) -> bool:
    """The ACL's verdict on A running ``command``, asked without running it."""
    verdict = await tenants.admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "DRYRUN", tenants.a.resource, *command
    )
    return verdict != b"OK"


async def refused(tenants: Tenants, *command: str | int) -> None:
    """A sends ``command`` and gets NOPERM.

    The ACL is asked first (ACL DRYRUN): a regression must fail the test, not
    run FLUSHALL or an endless script on the server every test run shares.
    """
    assert await denied_by_acl(tenants, *command), f"the ACL lets A run {command}"
    with pytest.raises(NoPermissionError):
        await tenants.client.execute_command(*command)  # type: ignore[no-untyped-call]


class TestRedisFunctionsAndScripts:
    """Functions and the script cache are one per server, not one per user."""

    async def test_a_tenant_cannot_replace_another_tenants_function_library(
        self, tenants: Tenants
    ) -> None:
        """Attack: FUNCTION LOAD REPLACE with the name of B's library, so B's FCALL runs A's code
        on B's keys."""
        code = "#!lua name=queue\nredis.register_function('pop', function(k) return 1 end)"
        await refused(tenants, "FUNCTION", "LOAD", "REPLACE", code)

    async def test_a_tenant_cannot_read_the_code_of_other_tenants_functions(
        self, tenants: Tenants
    ) -> None:
        """Attack: FUNCTION LIST WITHCODE prints every library on the server, B's included."""
        await refused(tenants, "FUNCTION", "LIST", "WITHCODE")

    async def test_a_tenant_cannot_dump_every_function_library(self, tenants: Tenants) -> None:
        """Attack: FUNCTION DUMP serializes every library on the server, to read or restore."""
        await refused(tenants, "FUNCTION", "DUMP")

    async def test_a_tenant_cannot_restore_libraries_over_the_servers(
        self, tenants: Tenants
    ) -> None:
        """Attack: FUNCTION RESTORE ... REPLACE swaps every library for A's payload."""
        await refused(tenants, "FUNCTION", "RESTORE", "payload", "REPLACE")

    async def test_a_tenant_cannot_delete_another_tenants_library(self, tenants: Tenants) -> None:
        """Attack: FUNCTION DELETE of B's library breaks B's FCALLs."""
        await refused(tenants, "FUNCTION", "DELETE", "queue")

    async def test_a_tenant_cannot_flush_every_function(self, tenants: Tenants) -> None:
        """Attack: FUNCTION FLUSH deletes every tenant's libraries at once."""
        await refused(tenants, "FUNCTION", "FLUSH")

    async def test_a_tenant_cannot_kill_another_tenants_function(self, tenants: Tenants) -> None:
        """Attack: FUNCTION KILL stops whichever function is running, B's included."""
        await refused(tenants, "FUNCTION", "KILL")

    async def test_a_tenant_cannot_call_functions(self, tenants: Tenants) -> None:
        """Attack: FCALL of B's library (it runs under A's ACL, but it is B's code and
        an endless function blocks the server for everyone)."""
        await refused(tenants, "FCALL", "pop", 0)
        await refused(tenants, "FCALL_RO", "pop", 0)

    async def test_a_tenant_cannot_flush_the_script_cache(self, tenants: Tenants) -> None:
        """Attack: SCRIPT FLUSH empties the cache every tenant's EVALSHA relies on."""
        await refused(tenants, "SCRIPT", "FLUSH")

    async def test_a_tenant_cannot_kill_another_tenants_script(self, tenants: Tenants) -> None:
        """Attack: SCRIPT KILL stops whichever script is running, B's included."""
        await refused(tenants, "SCRIPT", "KILL")

    async def test_a_tenant_cannot_load_or_probe_the_script_cache(self, tenants: Tenants) -> None:
        """Attack: SCRIPT EXISTS of known SHAs tells which libraries other tenants use."""
        await refused(tenants, "SCRIPT", "EXISTS", "0" * 40)
        await refused(tenants, "SCRIPT", "LOAD", "return 1")

    @pytest.mark.parametrize("command", ["EVAL", "EVAL_RO"])
    async def test_a_tenant_cannot_run_lua_that_blocks_the_server(
        self, tenants: Tenants, command: str
    ) -> None:
        """Attack: an endless EVAL holds the single-threaded server; after
        busy-reply-threshold every tenant gets BUSY until an admin kills it. Lua can also
        compute key names the command line never shows."""
        await refused(tenants, command, "while true do end", 0)

    @pytest.mark.parametrize("command", ["EVALSHA", "EVALSHA_RO"])
    async def test_a_tenant_cannot_run_cached_scripts_by_sha(
        self, tenants: Tenants, command: str
    ) -> None:
        """Attack: EVALSHA of a SHA another tenant loaded runs B's script."""
        await refused(tenants, command, "0" * 40, 0)


class TestRedisIntrospection:
    """Commands that answer about the server rather than about keys A names."""

    async def test_a_tenant_cannot_watch_other_tenants_key_names_through_tracking(
        self, tenants: Tenants
    ) -> None:
        """Attack: CLIENT TRACKING ON BCAST PREFIX <B's prefix> streams an invalidation
        for every key B writes, naming it."""
        await refused(
            tenants,
            "CLIENT",
            "TRACKING",
            "ON",
            "BCAST",
            "PREFIX",
            f"{tenants.b.resource}:",
        )

    async def test_a_tenant_cannot_list_other_tenants_channels(self, tenants: Tenants) -> None:
        """Attack: PUBSUB CHANNELS lists every channel with a subscriber, B's included."""
        await refused(tenants, "PUBSUB", "CHANNELS")
        await refused(tenants, "PUBSUB", "SHARDCHANNELS")

    async def test_a_tenant_cannot_count_subscribers_of_other_tenants_channels(
        self, tenants: Tenants
    ) -> None:
        """Attack: PUBSUB NUMSUB <B's channel> tells whether B's workers are listening."""
        channel = tenants.key(tenants.b, "events")
        await refused(tenants, "PUBSUB", "NUMSUB", channel)
        await refused(tenants, "PUBSUB", "SHARDNUMSUB", channel)
        await refused(tenants, "PUBSUB", "NUMPAT")

    async def test_a_tenant_cannot_read_the_servers_memory_stats(self, tenants: Tenants) -> None:
        """Attack: MEMORY STATS (and DOCTOR, MALLOC-STATS) tell the server's size and
        keyspace counts, i.e. how much the other tenants hold."""
        for sub in ("STATS", "DOCTOR", "MALLOC-STATS", "PURGE"):
            await refused(tenants, "MEMORY", sub)

    async def test_a_tenant_cannot_size_another_tenants_key(self, tenants: Tenants) -> None:
        """Attack: MEMORY USAGE <B's key> / OBJECT FREQ <B's key> probe B's data."""
        await refused(tenants, "MEMORY", "USAGE", tenants.key(tenants.b, "secret"))
        await refused(tenants, "OBJECT", "ENCODING", tenants.key(tenants.b, "secret"))

    async def test_a_tenant_cannot_list_or_kill_other_tenants_connections(
        self, tenants: Tenants
    ) -> None:
        """Attack: CLIENT LIST shows every connection (user, address, last command);
        CLIENT KILL USER <B> disconnects B; CLIENT PAUSE / NO-EVICT / UNBLOCK act on
        every client."""
        await refused(tenants, "CLIENT", "LIST")
        await refused(tenants, "CLIENT", "KILL", "USER", tenants.b.resource)
        await refused(tenants, "CLIENT", "PAUSE", 1)
        await refused(tenants, "CLIENT", "NO-EVICT", "ON")
        await refused(tenants, "CLIENT", "UNBLOCK", 1)

    @pytest.mark.parametrize(
        "command",
        [
            pytest.param(("INFO",), id="info: clients, keyspace counts, commandstats"),
            pytest.param(("CONFIG", "GET", "*"), id="config: the server's settings"),
            pytest.param(("MONITOR",), id="monitor: every command of every tenant"),
            pytest.param(("SLOWLOG", "GET"), id="slowlog: other tenants' commands and args"),
            pytest.param(("LATENCY", "LATEST"), id="latency: the server's events"),
            pytest.param(("ACL", "LOG"), id="acl log: other users' refused commands"),
            pytest.param(("ACL", "LIST"), id="acl list: every user and its rules"),
            pytest.param(("ACL", "USERS"), id="acl users: every tenant's name"),
            pytest.param(("MODULE", "LIST"), id="module: list or load native code"),
            pytest.param(("LASTSAVE",), id="lastsave: the server's persistence"),
            pytest.param(("ROLE",), id="role: replication topology"),
            pytest.param(("WAIT", 0, 1), id="wait: replication offsets"),
            pytest.param(("CLUSTER", "INFO"), id="cluster: topology"),
        ],
    )
    async def test_a_tenant_cannot_inspect_the_server(
        self, tenants: Tenants, command: tuple[str, ...]
    ) -> None:
        """Attack: each command answers about the whole server (the id says what it leaks)."""
        await refused(tenants, *command)

    async def test_a_tenant_may_not_debug_the_server_even_where_debug_is_enabled(
        self, tenants: Tenants
    ) -> None:
        """Attack: DEBUG SLEEP / SEGFAULT stop every tenant's server. This server refuses
        DEBUG to everyone (enable-debug-command no) before the ACL is asked, so the ACL's
        own verdict is read with ACL DRYRUN: it must hold on servers that enable DEBUG."""
        assert await denied_by_acl(tenants, "DEBUG", "SLEEP", "0")


class TestRedisKeyspace:
    """Key names A does not spell out, other databases, other hosts."""

    @pytest.mark.parametrize(
        "command",
        [
            pytest.param(("KEYS", "*"), id="keys"),
            pytest.param(("SCAN", 0, "MATCH", "*"), id="scan"),
            pytest.param(("RANDOMKEY",), id="randomkey"),
            pytest.param(("DBSIZE",), id="dbsize"),
        ],
    )
    async def test_a_tenant_cannot_list_the_keyspace(
        self, tenants: Tenants, command: tuple[str, ...]
    ) -> None:
        """Attack: these return keys (or their count) without naming them, so the key
        pattern cannot filter them: B's key names would show."""
        await refused(tenants, *command)

    @pytest.mark.parametrize(
        "command",
        [("FLUSHALL",), ("FLUSHDB",), ("SWAPDB", 0, 1)],
        ids=["flushall", "flushdb", "swapdb"],
    )
    async def test_a_tenant_cannot_wipe_or_swap_every_tenants_keys(
        self, tenants: Tenants, command: tuple[str, ...]
    ) -> None:
        """Attack: wipe (or swap away) database 0 with everyone's keys in it."""
        await refused(tenants, *command)

    async def test_a_tenant_cannot_leave_database_zero(self, tenants: Tenants) -> None:
        """Attack: SELECT 1, MOVE or COPY ... DB 1 put keys where destroy never looks
        (they outlive the add-on) and where A's FLUSHDB-like tricks are untested."""
        await tenants.client.execute_command("SELECT", 0)  # type: ignore[no-untyped-call]
        await refused(tenants, "SELECT", 1)
        mine = tenants.key(tenants.a, "k")
        await tenants.client.set(mine, "v")
        await refused(tenants, "MOVE", mine, 1)
        await refused(tenants, "COPY", mine, mine, "DB", 1)

    async def test_a_tenant_cannot_send_keys_to_another_host(self, tenants: Tenants) -> None:
        """Attack: MIGRATE makes the server open a connection to any host:port (SSRF) and
        ship A's key there; RESTORE loads a crafted serialized value."""
        mine = tenants.key(tenants.a, "k")
        await refused(tenants, "MIGRATE", "127.0.0.1", 9, mine, 0, 100)
        await refused(tenants, "RESTORE", mine, 0, "\x00")

    @pytest.mark.parametrize("command", ["SORT", "SORT_RO"])
    async def test_a_tenant_cannot_read_other_keys_through_sort_patterns(
        self, tenants: Tenants, command: str
    ) -> None:
        """Attack: SORT <own list> BY/GET <B's prefix>:* reads B's values through key
        names built from A's data, which the key pattern check never sees."""
        mine = tenants.key(tenants.a, "ids")
        await tenants.client.rpush(mine, "1")
        await refused(tenants, command, mine, "BY", "nosort", "GET", f"{tenants.b.resource}:*")

    async def test_a_tenant_cannot_read_another_tenants_stream_group(
        self, tenants: Tenants
    ) -> None:
        """Attack: XREADGROUP on B's job stream steals B's jobs."""
        await refused(
            tenants,
            "XREADGROUP",
            "GROUP",
            "workers",
            "a",
            "STREAMS",
            tenants.key(tenants.b, "jobs"),
            ">",
        )

    async def test_a_tenant_cannot_administer_the_server(self, tenants: Tenants) -> None:
        """Attack: SHUTDOWN ABORT (harmless if it ran), ACL SETUSER A on ~* +@all,
        CONFIG SET maxmemory 1: take the server or its users over."""
        await refused(tenants, "SHUTDOWN", "ABORT")
        await refused(tenants, "ACL", "SETUSER", tenants.a.resource, "~*", "+@all")
        await refused(tenants, "CONFIG", "SET", "maxmemory", "1")


class TestRedisPubSub:
    async def test_a_tenant_cannot_subscribe_to_another_tenants_channel(
        self, tenants: Tenants
    ) -> None:
        """Attack: SUBSCRIBE / SSUBSCRIBE <B's channel> to read B's messages."""
        await refused(tenants, "SUBSCRIBE", tenants.key(tenants.b, "events"))
        await refused(tenants, "SSUBSCRIBE", tenants.key(tenants.b, "events"))

    @pytest.mark.parametrize("pattern", ["*", "slipway*", "{b}*"])
    async def test_a_tenant_cannot_pattern_subscribe_beyond_its_prefix(
        self, tenants: Tenants, pattern: str
    ) -> None:
        """Attack: PSUBSCRIBE * (or B's prefix) receives every tenant's messages, and the
        keyspace notifications (__keyspace@0__:*) that name every key."""
        pattern = pattern.replace("{b}", tenants.b.resource)
        await refused(tenants, "PSUBSCRIBE", pattern)
        await refused(tenants, "PSUBSCRIBE", "__keyspace@0__:*")

    async def test_a_tenant_cannot_publish_on_another_tenants_channel(
        self, tenants: Tenants
    ) -> None:
        """Attack: PUBLISH / SPUBLISH a forged message to B's subscribers."""
        await refused(tenants, "PUBLISH", tenants.key(tenants.b, "events"), "forged")
        await refused(tenants, "SPUBLISH", tenants.key(tenants.b, "events"), "forged")


#: Commands a tenant may run that name no key: each reviewed as acting on the
#: connection only, or confined by the channel pattern (the pub/sub ones).
KEYLESS_REVIEWED = {
    "auth",
    "hello",
    "ping",
    "echo",
    "quit",
    "reset",
    "select",  # only SELECT 0 (+select|0)
    "multi",
    "exec",
    "discard",
    "unwatch",
    "client|setname",
    "client|getname",
    "client|id",
    "client|info",
    "client|reply",
    "acl|whoami",  # A's own name: its key prefix
    "command|count",
    "command|docs",
    "command|getkeys",
    "command|getkeysandflags",
    "command|help",
    "command|info",
    "command|list",
    "object|help",
    "xgroup|help",
    "xinfo|help",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "publish",
    "spublish",
}


def _commands(table: dict[str, Any]) -> Iterator[tuple[str, list[str], int, bool]]:
    """(name, words, arity, names_keys) of every command and subcommand in COMMAND's reply."""
    for name, info in table.items():
        subs = info.get("subcommands") or []
        for sub in subs:
            full = sub[0].decode()
            yield full, full.split("|"), abs(int(sub[1])), bool(sub[8])
        if not subs:
            yield name, [name], abs(int(info["arity"])), bool(info["key_specifications"])


class TestRedisAllowList:
    async def test_every_command_a_tenant_may_run_names_its_keys_or_was_reviewed(
        self, tenants: Tenants
    ) -> None:
        """Attack class: any command that answers about the server instead of about keys
        A names (the next PUBSUB CHANNELS or MEMORY STATS a Redis release adds). Asks the
        server itself (ACL DRYRUN) for each of its commands whether A may run it."""
        table = await tenants.admin.execute_command("COMMAND")  # type: ignore[no-untyped-call]
        allowed: set[str] = set()
        keyless: set[str] = set()
        for name, words, arity, names_keys in _commands(table):
            args = [*words, *[tenants.key(tenants.a, "k")] * max(0, arity - len(words))]
            if not await denied_by_acl(tenants, *args):
                allowed.add(name)
                if not names_keys:
                    keyless.add(name)
        assert keyless <= KEYLESS_REVIEWED, keyless - KEYLESS_REVIEWED
        assert {"get", "xreadgroup", "ping"} <= allowed  # the question was asked right


PG_PLAN = PostgresPlan(3, "30s", "60s", "1MB")


@dataclass
class PgTenants:
    a: Provisioned
    b: Provisioned

    def a_on(self, database: str) -> str:
        """A's own credentials, pointed at another database."""
        return self.a.url.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="module")
def pg() -> Iterator[PgTenants]:
    """Two tenants for the module: each CREATE/DROP DATABASE costs a checkpoint."""
    addons = PostgresAddons(
        admin_dsn=ADMIN_DSN,
        public_host="127.0.0.1",
        public_port=5432,
        prefix=TEST_PREFIX,
        plans={"plan": PG_PLAN},
    )
    a = asyncio.run(addons.create("plan"))
    b = asyncio.run(addons.create("plan"))
    try:
        yield PgTenants(a, b)
    finally:
        asyncio.run(addons.destroy(a.resource))
        asyncio.run(addons.destroy(b.resource))


@contextlib.asynccontextmanager
async def as_a(pg: PgTenants) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
    """A session of A in its own database, logged in with A's URL."""
    async with await psycopg.AsyncConnection.connect(pg.a.url, autocommit=True) as conn:
        yield conn


class TestPostgresDatabases:
    @pytest.mark.parametrize("database", ["postgres", "template1"])
    async def test_a_tenant_cannot_open_the_servers_own_databases(
        self, pg: PgTenants, database: str
    ) -> None:
        """Attack: connect to ``postgres`` (the admin's maintenance database) or
        ``template1`` (whose objects every new database, every future tenant's, copies)."""
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            await psycopg.AsyncConnection.connect(pg.a_on(database))

    async def test_a_tenant_cannot_open_another_tenants_database(self, pg: PgTenants) -> None:
        """Attack: A's credentials with B's database name in the URL."""
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            await psycopg.AsyncConnection.connect(pg.a_on(pg.b.resource))

    async def test_a_tenant_cannot_create_a_database(self, pg: PgTenants) -> None:
        """Attack: CREATE DATABASE to escape its own database's connection fence and size."""
        async with as_a(pg) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("CREATE DATABASE escape")


class TestPostgresRole:
    async def test_the_tenant_role_holds_no_attribute_beyond_login(self, pg: PgTenants) -> None:
        """Attack surface: a role created under an operator's defaults, or altered since,
        with one attribute too many (CREATEROLE alone reaches every non-superuser)."""
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN) as admin:
            row = await (
                await admin.execute(
                    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication,"
                    " rolbypassrls, rolconnlimit FROM pg_roles WHERE rolname = %s",
                    (pg.a.resource,),
                )
            ).fetchone()
        assert row == (True, False, False, False, False, False, PG_PLAN.connection_limit)

    @pytest.mark.parametrize(
        "attribute", ["SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS"]
    )
    async def test_a_tenant_cannot_grant_itself_an_attribute(
        self, pg: PgTenants, attribute: str
    ) -> None:
        """Attack: ALTER ROLE <own> SUPERUSER (or any other attribute)."""
        async with as_a(pg) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(f'ALTER ROLE "{pg.a.resource}" {attribute}')

    async def test_a_tenant_cannot_lift_its_temp_file_limit_on_its_role(
        self, pg: PgTenants
    ) -> None:
        """Attack: ALTER ROLE <own> SET temp_file_limit = -1, for every future session."""
        async with as_a(pg) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(f'ALTER ROLE "{pg.a.resource}" SET temp_file_limit = -1')

    async def test_a_tenant_cannot_create_roles(self, pg: PgTenants) -> None:
        """Attack: CREATE ROLE to get a login without the plan's CONNECTION LIMIT."""
        async with as_a(pg) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("CREATE ROLE spare LOGIN")

    @pytest.mark.parametrize(
        "statement", ["SET ROLE postgres", "SET SESSION AUTHORIZATION postgres"]
    )
    async def test_a_tenant_cannot_become_another_role(self, pg: PgTenants, statement: str) -> None:
        """Attack: act as the superuser (or as B) inside A's own session."""
        async with as_a(pg) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement)

    @pytest.mark.parametrize(
        "statement",
        [
            "SELECT pg_read_file('/etc/passwd')",
            "COPY (SELECT 1) TO PROGRAM 'true'",
            "CREATE EXTENSION dblink",
            "CREATE EXTENSION file_fdw",
        ],
    )
    async def test_a_tenant_cannot_reach_the_servers_files_or_other_servers(
        self, pg: PgTenants, statement: str
    ) -> None:
        """Attack: read the server's files, run programs as the postgres user, or open
        connections from the server (dblink) to databases A cannot open itself."""
        async with as_a(pg) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement)


class TestPostgresTransactionsOutsideSessions:
    async def test_a_tenant_cannot_park_a_transaction_outside_its_session(
        self, pg: PgTenants
    ) -> None:
        """Attack: PREPARE TRANSACTION keeps a transaction and its locks after the session
        ends, where neither idle_in_transaction_session_timeout nor the watchdog (which
        acts on sessions) reaches it. Refused while the server keeps
        max_prepared_transactions = 0, as docs/control.md asks of an add-on server."""
        async with as_a(pg) as conn:
            await conn.execute("BEGIN")
            await conn.execute("SELECT pg_advisory_xact_lock(7)")
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
                await conn.execute("PREPARE TRANSACTION 'parked'")


class TestPostgresOtherSessions:
    async def test_a_tenant_cannot_cancel_or_end_another_tenants_sessions(
        self, pg: PgTenants
    ) -> None:
        """Attack: pg_cancel_backend / pg_terminate_backend on B's backends, whose pids
        pg_stat_activity shows."""
        async with (
            await psycopg.AsyncConnection.connect(pg.b.url, autocommit=True) as b,
            as_a(pg) as conn,
        ):
            b_pid = b.info.backend_pid
            for function in ("pg_cancel_backend", "pg_terminate_backend"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await conn.execute(f"SELECT {function}(%s)", (b_pid,))
            assert await (await b.execute("SELECT 1")).fetchone() == (1,)

    async def test_a_tenant_cannot_read_another_tenants_queries(self, pg: PgTenants) -> None:
        """Attack: pg_stat_activity.query of B's sessions (it may hold B's data inline)."""
        async with (
            await psycopg.AsyncConnection.connect(pg.b.url, autocommit=True) as b,
            as_a(pg) as conn,
        ):
            await b.execute("SELECT 'b-secret'")
            row = await (
                await conn.execute(
                    "SELECT query FROM pg_stat_activity WHERE pid = %s", (b.info.backend_pid,)
                )
            ).fetchone()
        assert row == ("<insufficient privilege>",)

    async def test_the_role_list_a_tenant_can_read_holds_no_password(self, pg: PgTenants) -> None:
        """Attack: read password hashes of the other tenants' roles. (Role and database
        names are world-readable in PostgreSQL, pg_roles and pg_database; they are random
        and carry no secret: see docs/control.md.)"""
        async with as_a(pg) as conn:
            row = await (
                await conn.execute(
                    "SELECT rolpassword FROM pg_roles WHERE rolname = %s", (pg.b.resource,)
                )
            ).fetchone()
            assert row == ("********",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("SELECT rolpassword FROM pg_authid")
