"""The I/O shells: how one server target is polled, with kept connections.

Each source keeps one connection per server target, opened on the first poll
and reused until it fails (then it is closed and reopened on the next due
poll). One is enough: a poll is a short sequence of queries, and every extra
connection would count against the server's max_connections, which add-ons
share. Library errors become :class:`PollError` here, at one boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from exporters import pg_server, postgres, redis_info
from exporters.errors import ErrorKind, PollError, classify
from exporters.samples import Outcome
from exporters.settings import ExporterSettings
from exporters.targets import Target

APPLICATION_NAME = "slipway-exporter"


class Source(Protocol):
    up_name: str

    async def poll(self, target: Target, members: Sequence[Target]) -> dict[str, Outcome]:
        """Outcomes of ``target`` and its database ``members``; raises PollError."""

    async def forget(self, name: str) -> None:
        """Close the kept connection of a target (it failed, or left the file)."""

    async def close(self) -> None: ...


class PostgresSource:
    up_name = "pg_up"

    def __init__(self, settings: ExporterSettings) -> None:
        self._settings = settings
        self._conns: dict[str, psycopg.AsyncConnection[Any]] = {}

    async def _connection(self, target: Target) -> psycopg.AsyncConnection[Any]:
        conn = self._conns.get(target.name)
        if conn is not None and not conn.closed:
            return conn
        assert target.dsn is not None
        timeout_ms = int(self._settings.timeout * 1000)
        kwargs: dict[str, Any] = {
            "application_name": APPLICATION_NAME,
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
            "autocommit": True,
        }
        if target.password is not None:
            kwargs["password"] = target.password
        conn = await psycopg.AsyncConnection.connect(target.dsn, **kwargs)
        self._conns[target.name] = conn
        return conn

    async def poll(self, target: Target, members: Sequence[Target]) -> dict[str, Outcome]:
        try:
            conn = await self._connection(target)
            async with conn.cursor() as cur:
                await cur.execute(postgres.SERVER_QUERY)
                server_row = await cur.fetchone()
                if server_row is None:
                    raise PollError(ErrorKind.PROTOCOL)
                server = postgres.ServerRow(*server_row)
                await cur.execute(pg_server.SETTINGS_QUERY)
                settings = [pg_server.SettingRow(*r) for r in await cur.fetchall()]
                await cur.execute(pg_server.bgwriter_query(server.version_num))
                bgwriter_row = await cur.fetchone()
                bgwriter = pg_server.BgwriterRow(*bgwriter_row) if bgwriter_row else None
                await cur.execute(postgres.DATABASES_QUERY)
                databases = [postgres.DatabaseRow(*r) for r in await cur.fetchall()]
                await cur.execute(postgres.ACTIVITY_QUERY, (self._settings.long_query_seconds,))
                activity = [postgres.ActivityRow(*r) for r in await cur.fetchall()]
                await cur.execute(postgres.LOCKS_QUERY)
                locks = [postgres.LockRow(*r) for r in await cur.fetchall()]
        except PollError:
            raise
        except (psycopg.Error, OSError, TypeError) as exc:
            raise PollError(classify(exc)) from exc
        raw = postgres.PgRaw(server, settings, bgwriter, databases, activity, locks)
        # Pure but ~50 ms for hundreds of databases: off the loop, so scrapes stay quick.
        return await asyncio.to_thread(postgres.outcomes, target, raw, members)

    async def forget(self, name: str) -> None:
        conn = self._conns.pop(name, None)
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def close(self) -> None:
        for name in list(self._conns):
            await self.forget(name)


class RedisSource:
    up_name = "redis_up"

    def __init__(self, settings: ExporterSettings) -> None:
        self._settings = settings
        self._clients: dict[str, aioredis.Redis] = {}
        self._sections = redis_info.SECTIONS + (
            (redis_info.COMMAND_SECTION,) if settings.command_stats else ()
        )

    def _client(self, target: Target) -> aioredis.Redis:
        client = self._clients.get(target.name)
        if client is None:
            assert target.dsn is not None
            kwargs: dict[str, Any] = {}
            if target.password is not None:
                kwargs["password"] = target.password
            client = aioredis.Redis.from_url(
                target.dsn,
                client_name=APPLICATION_NAME,
                socket_connect_timeout=self._settings.timeout,
                socket_timeout=self._settings.timeout,
                max_connections=1,
                # The poll loop owns retrying (with backoff); redis-py's own retries
                # would multiply connection attempts on a server that is down. The asyncio
                # Retry: redis 8 warns about (and converts) a synchronous one.
                retry=Retry(NoBackoff(), 0),
                **kwargs,
            )
            # The core parses INFO's text itself; redis-py's dict would lose the layout.
            client.set_response_callback("INFO", lambda response, **_: response)
            self._clients[target.name] = client
        return client

    async def poll(self, target: Target, members: Sequence[Target]) -> dict[str, Outcome]:
        client = self._client(target)
        try:
            raw = await client.execute_command("INFO", *self._sections)  # type: ignore[no-untyped-call]
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            fields = redis_info.parse_info(text)
            if "maxclients" not in fields:
                # Redis before 7 has no maxclients in INFO; CONFIG may well be denied
                # to a least-privilege user, and then the series is simply absent.
                with contextlib.suppress(ResponseError):
                    reply = await client.execute_command(  # type: ignore[no-untyped-call]
                        "CONFIG", "GET", "maxclients"
                    )
                    if isinstance(reply, list) and len(reply) == 2:
                        value = reply[1]
                        fields["maxclients"] = (
                            value.decode() if isinstance(value, bytes) else str(value)
                        )
        except PollError:
            raise
        except (RedisError, OSError, UnicodeDecodeError) as exc:
            raise PollError(classify(exc)) from exc
        return {target.name: redis_info.outcome(target, fields)}

    async def forget(self, name: str) -> None:
        client = self._clients.pop(name, None)
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def close(self) -> None:
        for name in list(self._clients):
            await self.forget(name)
