"""Add-ons over HTTP: provisioned on the real shared servers, attached as NAME_URL."""

from __future__ import annotations

import tomllib
from pathlib import Path

import psycopg
import pytest
import redis.asyncio as aioredis

from exporters.targets import Kind, parse_targets
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
        status, _, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "redis:shared"})
        assert status == 201
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        client = aioredis.Redis.from_url(config["REDIS_URL"])
        try:
            user = await client.acl_whoami()
            await client.set(f"{user}:visits", 1)
            assert await client.incr(f"{user}:visits") == 2
        finally:
            await client.aclose()


class TestHerokuNames:
    @pytest.mark.parametrize(
        ("plan", "ours", "attachment"),
        [
            ("heroku-postgresql:essential-0", "postgres:mini", "DATABASE"),
            ("heroku-postgresql:standard-0", "postgres:standard", "DATABASE"),
        ],
    )
    async def test_heroku_s_service_and_plan_names_create_ours(
        self, api: Api, shop: str, plan: str, ours: str, attachment: str
    ) -> None:
        """`heroku addons:create heroku-postgresql:essential-0` works unchanged."""
        status, addon, _ = await api.call("POST", "/apps/shop/addons", json={"plan": plan})
        assert status == 201, addon
        assert (addon["plan"]["name"], addon["attachment"]["name"]) == (ours, attachment)

    async def test_a_heroku_tier_with_no_match_here_lists_our_plans(
        self, api: Api, shop: str
    ) -> None:
        got, error, _ = await api.call(
            "POST", "/apps/shop/addons", json={"plan": "heroku-postgresql:enormous-9"}
        )
        assert (got, error["id"]) == (422, "plan_not_found")
        assert "mini" in error["message"]

    @pytest.mark.parametrize("plan", ["redis", "heroku-redis", "heroku-redis:mini"])
    async def test_without_dedicated_redis_a_bare_redis_is_refused_never_made_shared(
        self, api: Api, shop: str, plan: str
    ) -> None:
        """Only the shared server here (no agent to run instances): a Heroku app asking for
        Redis would get a prefix-fenced user its queue library cannot use, so it is told."""
        got, error, _ = await api.call("POST", "/apps/shop/addons", json={"plan": plan})
        assert (got, error["id"]) == (422, "plan_not_found")
        assert "redis:shared" in error["message"]
        assert "RQ, Sidekiq, Celery and Bull" in error["message"]


class TestAddonErrors:
    @pytest.mark.parametrize(
        ("body", "status", "ident"),
        [
            ({"plan": "mysql"}, 422, "service_not_found"),
            ({"plan": "postgres:huge"}, 422, "plan_not_found"),
            ({"plan": 5}, 422, "invalid_params"),
            ({"plan": "redis:shared", "attachment": {"name": "lower"}}, 422, "invalid_attachment"),
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
        await api.call("POST", "/apps/shop/addons", json={"plan": "redis:shared"})
        text = (api.targets_dir / "postgres-targets.toml").read_text()
        postgres = tomllib.loads(text)
        assert postgres["targets"] == [
            {
                "name": pg["name"],
                "dsn_file": str(api.targets_dir / "dsn" / pg["name"]),
                "scope": "database",
                "labels": {"app": "shop", "plan": "mini", "addon": pg["name"]},
                "limits": {"connections": 5},
            }
        ]
        assert "postgresql://" not in text
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        dsn_file = Path(postgres["targets"][0]["dsn_file"])
        assert dsn_file.read_text() == config["DATABASE_URL"]
        assert dsn_file.stat().st_mode & 0o777 == 0o600
        # The exporter reads it with its own parser, resolving the DSN from the file.
        (target,) = parse_targets(
            text, kind=Kind.POSTGRES, environ={}, read_file=lambda p: Path(p).read_text()
        )
        assert (target.dsn, target.scope.value) == (config["DATABASE_URL"], "database")
        # Redis tenants may not run INFO: no per-tenant target without a server DSN.
        assert tomllib.loads((api.targets_dir / "redis-targets.toml").read_text()) == {}
        await api.call("DELETE", f"/apps/shop/addons/{pg['name']}")
        assert tomllib.loads((api.targets_dir / "postgres-targets.toml").read_text()) == {}
        assert not dsn_file.exists()


class TestRestart:
    async def test_starting_again_restores_redis_users_from_the_registry(
        self, api: Api, shop: str
    ) -> None:
        await api.call("POST", "/apps/shop/addons", json={"plan": "redis:shared"})
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        user = config["REDIS_URL"].split("//")[1].split(":")[0]
        admin = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
        try:
            await admin.acl_deluser(user)
            await api.control.start()
            assert await admin.acl_getuser(user) is not None
        finally:
            await admin.aclose()


async def connection_limit(role: str) -> int:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN) as conn:
        row = await (
            await conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,))
        ).fetchone()
        assert row is not None
        return int(row[0])


class TestPlanChanges:
    """``PATCH /apps/{app}/addons/{addon}`` (``addons:upgrade``): in place, data kept."""

    async def test_a_shared_postgres_moves_to_the_bigger_plans_limits_and_keeps_its_data(
        self, api: Api, shop: str
    ) -> None:
        _, pg, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "postgres:mini"})
        _, config, _ = await api.call("GET", "/apps/shop/config-vars")
        url = config["DATABASE_URL"]
        role = url.split("//")[1].split(":")[0]
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
        assert await connection_limit(role) == 5
        _, before, _ = await api.call("GET", "/apps/shop/releases")

        # Heroku's tier name, by the attachment, as `heroku addons:upgrade DATABASE ...` says.
        status, moved, _ = await api.call(
            "PATCH", "/apps/shop/addons/DATABASE", json={"plan": "heroku-postgresql:essential-1"}
        )
        assert status == 200, moved
        assert (moved["name"], moved["plan"]["name"]) == (pg["name"], "postgres:basic")
        assert "release" not in moved  # the URL is the same: nothing to release
        assert await connection_limit(role) == 20
        async with await psycopg.AsyncConnection.connect(url) as conn:
            assert await (await conn.execute("SELECT n FROM kept")).fetchone() == (7,)
        assert (await api.call("GET", "/apps/shop/releases"))[1] == before
        (listed,) = (await api.call("GET", "/apps/shop/addons"))[1]
        assert listed["plan"]["name"] == "postgres:basic"
        _, audit, _ = await api.call("GET", "/apps/shop/audit")
        assert audit[-1]["action"] == "addon.resize"
        assert audit[-1]["detail"] == {"addon": pg["name"], "from": "mini", "plan": "basic"}
        # The exporters' limits follow the plan.
        text = (api.targets_dir / "postgres-targets.toml").read_text()
        assert tomllib.loads(text)["targets"][0]["limits"] == {"connections": 20}

        # A bare plan name is one of the add-on's own service; back down works the same way.
        status, back, _ = await api.call(
            "PATCH", f"/apps/shop/addons/{pg['name']}", json={"plan": "mini"}
        )
        assert (status, back["plan"]["name"]) == (200, "postgres:mini")
        assert await connection_limit(role) == 5

    async def test_changes_that_cannot_be_made_in_place_say_what_to_do(
        self, api: Api, shop: str
    ) -> None:
        _, pg, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "postgres:mini"})
        _, cache, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "redis:shared"})
        path = f"/apps/shop/addons/{pg['name']}"
        cases = [
            (path, "redis:shared", "plan_change_impossible", "needs a new add-on"),
            (path, "postgres:huge", "plan_not_found", "plans: mini, basic, standard"),
            (path, "mini", "plan_unchanged", "already on postgres:mini"),
            (
                f"/apps/shop/addons/{cache['name']}",
                "shared-basic",
                "plan_change_impossible",
                "cannot change plan in place",
            ),
        ]
        for where, plan, reason, message in cases:
            status, refused, _ = await api.call("PATCH", where, json={"plan": plan})
            assert (status, refused["id"]) == (422, reason), plan
            assert message in refused["message"], refused
        status, refused, _ = await api.call("PATCH", path, json={"plan": ""})
        assert status == 422
        status, refused, _ = await api.call("PATCH", "/apps/shop/addons/ghost", json={"plan": "x"})
        assert (status, refused["id"]) == (404, "addon_not_found")
        (listed, _) = (await api.call("GET", "/apps/shop/addons"))[1]
        assert listed["plan"]["name"] == "postgres:mini"

    async def test_another_apps_token_cannot_change_a_plan(self, api: Api, shop: str) -> None:
        _, pg, _ = await api.call("POST", "/apps/shop/addons", json={"plan": "postgres:mini"})
        await api.call("POST", "/apps", json={"name": "other"})
        _, token, _ = await api.call("POST", "/tokens", json={"name": "o", "app": "other"})
        status, _, _ = await api.call(
            "PATCH",
            f"/apps/shop/addons/{pg['name']}",
            json={"plan": "basic"},
            token=token["token"],
        )
        assert status == 403
        assert (await api.call("GET", "/apps/shop/addons"))[1][0]["plan"]["name"] == "postgres:mini"
