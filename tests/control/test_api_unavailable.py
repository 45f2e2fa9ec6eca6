"""When a backing server fails, the API answers 503 with what failed, never a traceback."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from control.addons.postgres import PostgresAddons
from control.addons.redis import RedisAddons
from tests.control.conftest import ADMIN_DSN, ADMIN_TOKEN, Api, running_api, scratch_database


async def test_an_unreachable_addon_server_is_a_503_naming_it(api: Api) -> None:
    api.control.provisioners["postgres"] = PostgresAddons(
        admin_dsn="postgresql://postgres@127.0.0.1:1/postgres",
        public_host="127.0.0.1",
        public_port=1,
    )
    api.control.provisioners["redis"] = RedisAddons(
        admin_url="redis://127.0.0.1:1/0", public_host="127.0.0.1", public_port=1
    )
    await api.call("POST", "/apps", json={"name": "shop"})
    status, error, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "postgres"})
    assert (status, error["id"]) == (503, "addon_service_unavailable")
    assert error["message"].startswith("cannot reach the shared PostgreSQL")
    status, error, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "redis:shared"})
    assert (status, error["id"]) == (503, "addon_service_unavailable")
    assert "creating redis add-on" in error["message"]
    assert (await api.call("GET", "/apps/shop/addons"))[1] == []


async def test_a_lost_state_database_is_a_503_and_the_api_recovers_once_it_is_back(
    tmp_path: Path,
) -> None:
    async with scratch_database() as url, running_api(url, tmp_path) as api:
        database = url.rsplit("/", 1)[1]
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database))
            )
        status, error, _ = await api.call("GET", "/apps")
        assert (status, error["id"]) == (503, "store_unavailable")
        assert error["message"].startswith("the state store failed")
        # Back again (empty, migrated): the API recovers without a restart.
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        await api.control.start(bootstrap_admin_token=ADMIN_TOKEN)
        assert (await api.call("GET", "/apps"))[:2] == (200, [])
