"""Add-ons over HTTP: provisioned on the real shared servers, attached as NAME_URL."""

from __future__ import annotations

import tomllib
from pathlib import Path

import psycopg
import pytest
import redis.asyncio as aioredis

from tests.control.conftest import ADMIN_DSN, Api


@pytest.fixture
async def shop(api: Api, tmp_path: Path) -> str:
    await api.call("POST", "/apps", json={"name": "shop"})
    await api.call(
        "POST", "/apps/shop/releases", json={"artifact": str(tmp_path), "procfile": {"web": "x"}}
    )
    return "shop"


async def role_exists(name: str) -> bool:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN) as conn:
        row = await (
            await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        ).fetchone()
        return row is not None


class TestPostgresAddon:
    async def test_create_attaches_database_url_and_releases(self, api: Api, shop: str) -> None:
        status, addon, _ = await api.call(
            "POST", "/apps/shop/addons", json={"plan": "postgres:mini"}
        )
        assert status == 201, addon
        assert (addon["plan"]["name"], addon["attachment"]["name"], addon["config_vars"]) == (
            "postgres:mini",
            "DATABASE",
            ["DATABASE_URL"],
        )
        assert (addon["release"]["version"], addon["release"]["status"]) == (3, "succeeded")
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        url = config["DATABASE_URL"]
        async with await psycopg.AsyncConnection.connect(url) as conn:
            row = await (await conn.execute("SELECT current_user = current_database()")).fetchone()
        assert row == (True,)
        assert api.target.deployments[-1].env["DATABASE_URL"] == url
        _, releases, _ = await api.call("GET", "/apps/shop/releases")
        assert releases[-1]["description"] == f"Attach DATABASE ({addon['name']})"

    async def test_destroy_drops_the_database_and_detaches(self, api: Api, shop: str) -> None:
        _, addon, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "postgres"})
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        role = config["DATABASE_URL"].split("//")[1].split(":")[0]
        status, destroyed, _ = await api.call("DELETE", f"/apps/shop/addons/{addon['name']}")
        assert (status, destroyed["release"]["version"]) == (200, 4)
        assert not await role_exists(role)
        assert (await api.call("GET", "/apps/shop/config-vars"))[1] == {}
        assert "DATABASE_URL" not in api.target.deployments[-1].env
        assert (await api.call("GET", "/apps/shop/addons"))[1] == []

    async def test_deleting_the_app_destroys_its_addons(self, api: Api, shop: str) -> None:
        await api.call("POST", "/apps/shop/addons", json={"plan": "postgres"})
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        role = config["DATABASE_URL"].split("//")[1].split(":")[0]
        await api.call("DELETE", "/apps/shop")
        assert not await role_exists(role)

    async def test_two_addons_attach_under_different_names(self, api: Api, shop: str) -> None:
        await api.call("POST", "/apps/shop/addons", json={"plan": "postgres"})
        status, _, _ = await api.call(
            "POST",
            "/apps/shop/addons",
            json={"plan": "postgres", "attachment": {"name": "ANALYTICS"}},
        )
        assert status == 201
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        assert sorted(config) == ["ANALYTICS_URL", "DATABASE_URL"]
        _, addons, _ = await api.call("GET", "/apps/shop/addons")
        assert sorted(a["attachment"]["name"] for a in addons) == ["ANALYTICS", "DATABASE"]

    async def test_a_taken_attachment_is_a_conflict_and_provisions_nothing(
        self, api: Api, shop: str
    ) -> None:
        await api.call("POST", "/apps/shop/addons", json={"plan": "postgres"})
        status, error, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "postgres"})
        assert (status, error["id"]) == (409, "attachment_taken")
        assert len((await api.call("GET", "/apps/shop/addons"))[1]) == 1

    async def test_an_attachment_over_a_set_config_var_is_a_conflict(
        self, api: Api, shop: str
    ) -> None:
        await api.call("PATCH", "/apps/shop/config-vars", json={"DATABASE_URL": "mine"})
        status, error, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "postgres"})
        assert (status, error["id"]) == (409, "config_var_taken")

    async def test_an_addons_variable_cannot_be_set_by_hand(self, api: Api, shop: str) -> None:
        await api.call("POST", "/apps/shop/addons", json={"plan": "postgres"})
        status, error, _ = await api.call(
            "PATCH", "/apps/shop/config-vars", json={"DATABASE_URL": "elsewhere"}
        )
        assert (status, error["id"]) == (409, "addon_config_var")


class TestRedisAddon:
    async def test_create_attaches_redis_url_with_a_user_fenced_to_its_prefix(
        self, api: Api, shop: str
    ) -> None:
        status, _, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "redis"})
        assert status == 201
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        client = aioredis.Redis.from_url(config["REDIS_URL"])
        try:
            user = await client.acl_whoami()
            await client.set(f"{user}:visits", 1)
            assert await client.incr(f"{user}:visits") == 2
        finally:
            await client.aclose()


class TestAddonErrors:
    @pytest.mark.parametrize(
        ("body", "status", "ident"),
        [
            ({"plan": "mysql"}, 422, "service_not_found"),
            ({"plan": "postgres:huge"}, 422, "plan_not_found"),
            ({"plan": 5}, 422, "invalid_params"),
            ({"plan": "redis", "attachment": {"name": "lower"}}, 422, "invalid_attachment"),
        ],
    )
    async def test_a_bad_addon_request_is_refused(
        self, api: Api, shop: str, body: dict[str, object], status: int, ident: str
    ) -> None:
        got, error, _ = await api.call("POST", "/apps/shop/addons", json=body)
        assert (got, error["id"]) == (status, ident)

    async def test_destroying_a_missing_addon_is_not_found(self, api: Api, shop: str) -> None:
        status, error, _ = await api.call("DELETE", "/apps/shop/addons/postgres-nope")
        assert (status, error["id"]) == (404, "addon_not_found")


class TestExporterTargets:
    async def test_the_targets_files_follow_the_registry_with_dsns_by_file(
        self, api: Api, shop: str
    ) -> None:
        _, pg, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "postgres:mini"})
        _, rd, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "redis:mini"})
        postgres = tomllib.loads((api.targets_dir / "postgres-targets.toml").read_text())
        redis = tomllib.loads((api.targets_dir / "redis-targets.toml").read_text())
        assert postgres["targets"] == [
            {
                "name": pg["name"],
                "dsn_file": str(api.targets_dir / "dsn" / pg["name"]),
                "labels": {"app": "shop", "plan": "mini", "addon": pg["name"]},
            }
        ]
        assert [t["name"] for t in redis["targets"]] == [rd["name"]]
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        dsn_file = Path(postgres["targets"][0]["dsn_file"])
        assert dsn_file.read_text() == config["DATABASE_URL"]
        assert dsn_file.stat().st_mode & 0o777 == 0o600
        assert "postgresql://" not in (api.targets_dir / "postgres-targets.toml").read_text()
        await api.call("DELETE", f"/apps/shop/addons/{pg['name']}")
        postgres = tomllib.loads((api.targets_dir / "postgres-targets.toml").read_text())
        assert postgres.get("targets", []) == []
        assert not dsn_file.exists()


class TestRestart:
    async def test_starting_again_restores_redis_users_from_the_registry(
        self, api: Api, shop: str
    ) -> None:
        await api.call("POST", "/apps/shop/addons", json={"plan": "redis"})
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        user = config["REDIS_URL"].split("//")[1].split(":")[0]
        admin = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
        try:
            await admin.acl_deluser(user)
            await api.control.start()
            assert await admin.acl_getuser(user) is not None
        finally:
            await admin.aclose()
