"""The state store on both databases: migrations, numbering, persistence, cascades."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from control.errors import Conflict, NotFound, StoreError, Unauthorized
from control.models import Addon, ReleaseStatus
from control.service import TOKEN_CACHE_TTL, Control
from control.store.db import Store, safe_url
from control.store.schema import metadata
from tests.control.conftest import running_api
from tests.control.targets import RecordingTarget

#: The newest migration: a database migrated to the end is at this revision.
HEAD = "0015"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = Store.open(db_url)
    await store.migrate()
    yield store
    await store.close()


class TestMigrations:
    async def test_the_migrations_build_exactly_the_declared_schema(self, store: Store) -> None:
        def diff(conn: sa.Connection) -> list[object]:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))

        async with store.engine.connect() as conn:
            assert await conn.run_sync(diff) == []

    async def test_migrating_twice_is_harmless(self, store: Store) -> None:
        await store.migrate()
        async with store.engine.connect() as conn:
            version = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        assert version == HEAD

    async def test_replicas_starting_together_migrate_once(self, pg_url: str) -> None:
        stores = [Store.open(pg_url) for _ in range(3)]
        try:
            await asyncio.gather(*(store.migrate() for store in stores))
            async with stores[0].engine.connect() as conn:
                version = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            assert version == HEAD
        finally:
            for store in stores:
                await store.close()

    async def test_an_unreachable_database_is_a_store_error_without_the_password(self) -> None:
        store = Store.open("postgresql+psycopg://postgres:s3cret@127.0.0.1:1/none")
        try:
            with pytest.raises(StoreError) as caught:
                await store.migrate()
            assert "s3cret" not in str(caught.value)
        finally:
            await store.close()

    def test_urls_are_logged_without_passwords(self) -> None:
        assert safe_url("postgresql+psycopg://u:s3cret@h/db") == "postgresql+psycopg://u:***@h/db"


class TestState:
    async def test_release_versions_count_up_per_app(self, store: Store) -> None:
        async with store.tx() as tx:
            shop = await tx.create_app("shop", now=1.0)
            blog = await tx.create_app("blog", now=1.0)
            versions = []
            for app in (shop, shop, blog, shop):
                release = await tx.add_release(
                    app,
                    description="d",
                    artifact=None,
                    procfile={},
                    config={"A": "1"},
                    addon_env={},
                    actor="me",
                    now=2.0,
                )
                versions.append((app.name, release.version))
        assert versions == [("shop", 1), ("shop", 2), ("blog", 1), ("shop", 3)]

    async def test_a_failed_transaction_leaves_nothing(self, store: Store) -> None:
        async def create_then_fail() -> None:
            async with store.tx() as tx:
                await tx.create_app("shop", now=1.0)
                await tx.get_app("ghost")

        with pytest.raises(NotFound):
            await create_then_fail()
        async with store.tx() as tx:
            assert await tx.find_app("shop") is None

    async def test_a_duplicate_name_is_a_conflict(self, store: Store) -> None:
        async with store.tx() as tx:
            await tx.create_app("shop", now=1.0)
        with pytest.raises(Conflict):
            async with store.tx() as tx:
                await tx.create_app("shop", now=1.0)

    async def test_pending_releases_left_by_a_crash_are_marked_failed(self, store: Store) -> None:
        async with store.tx() as tx:
            app = await tx.create_app("shop", now=1.0)
            await tx.add_release(
                app, description="d", artifact=None, procfile={}, config={}, addon_env={},
                actor="me", now=1.0,
            )  # fmt: skip
        async with store.tx() as tx:
            assert await tx.fail_interrupted_releases(now=2.0) == 1
            release = await tx.get_release(app, 1)
        assert (release.status, release.output) == (
            ReleaseStatus.FAILED,
            "interrupted: the control plane stopped",
        )

    async def test_deleting_an_app_deletes_what_hangs_off_it(self, store: Store) -> None:
        async with store.tx() as tx:
            app = await tx.create_app("shop", now=1.0)
            await tx.add_addon(
                app,
                Addon(
                    id="a1", app="shop", name="postgres-1", service="postgres", plan="mini",
                    attachment="DATABASE", url="postgresql://x", resource="r", created_at=1.0,
                ),
            )  # fmt: skip
            await tx.add_token(name="t", digest="d" * 64, admin=False, app=app, now=1.0)
            await tx.delete_app(app)
        async with store.tx() as tx:
            assert await tx.all_addons() == []
            assert await tx.find_token("d" * 64) is None

    async def test_json_snapshots_round_trip(self, store: Store) -> None:
        config = {"EMOJI": "ünïcode ☃", "QUOTE": 'a "b"', "EMPTY": ""}
        async with store.tx() as tx:
            app = await tx.create_app("shop", now=1.0)
            await tx.add_release(
                app, description="d", artifact="/a", procfile={"web": "run"}, config=config,
                addon_env={}, actor="me", now=1.0,
            )  # fmt: skip
            release = await tx.get_release(app, 1)
        assert (release.config, release.procfile) == (config, {"web": "run"})


class TestConcurrency:
    async def test_concurrent_config_changes_all_land_in_distinct_releases(
        self, db_url: str
    ) -> None:
        store = Store.open(db_url)
        control = Control(store=store, target=RecordingTarget())
        try:
            await control.start()
            await control.create_app("shop", actor="me")
            results = await asyncio.gather(
                *(control.update_config("shop", {f"K{i}": str(i)}, actor="me") for i in range(8))
            )
            assert sorted(release.version for _, release in results) == list(range(2, 10))
            assert await control.config("shop") == {f"K{i}": str(i) for i in range(8)}
        finally:
            await store.close()


class TestNothingLivesOnlyInMemory:
    async def test_a_restarted_control_plane_sees_everything(self, tmp_path: Path) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path}/state.db"
        async with running_api(url, tmp_path) as api:
            await api.call("POST", "/apps", json={"name": "shop"})
            await api.call("PATCH", "/apps/shop/config-vars", json={"A": "1"})
        store = Store.open(url)
        control = Control(store=store, target=RecordingTarget())
        try:
            await control.start()
            assert await control.config("shop") == {"A": "1"}
            assert [
                r.version for r in await control.list_releases("shop", after=None, limit=9)
            ] == [
                1,
                2,
            ]
            assert len(await control.audit(app="shop", after=None, limit=9)) == 2
        finally:
            await store.close()


class TestApiOnPostgres:
    async def test_the_api_runs_on_postgresql_as_on_sqlite(
        self, pg_url: str, tmp_path: Path
    ) -> None:
        async with running_api(pg_url, tmp_path) as api:
            assert (await api.call("POST", "/apps", json={"name": "shop"}))[0] == 201
            status, config, _ = await api.call("PATCH", "/apps/shop/config-vars", json={"A": "1"})
            assert (status, config) == (200, {"A": "1"})
            status, error, _ = await api.call("POST", "/apps", json={"name": "shop"})
            assert (status, error["id"]) == (409, "name_taken")
            _, releases, _ = await api.call("GET", "/apps/shop/releases")
            assert [r["version"] for r in releases] == [1, 2]


class TestTokenCache:
    async def test_another_replicas_revocation_takes_effect_within_the_ttl(
        self, tmp_path: Path
    ) -> None:
        now = [100.0]
        store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
        control = Control(store=store, target=RecordingTarget(), monotonic=lambda: now[0])
        try:
            await control.start()
            token, secret = await control.create_token(name="ci", admin=True, app=None, actor="me")
            await control.authenticate(secret)
            async with store.tx() as tx:  # as another replica would revoke it
                await tx.delete_token(token.id)
            now[0] += TOKEN_CACHE_TTL / 2
            assert (await control.authenticate(secret)).token.id == token.id
            now[0] += TOKEN_CACHE_TTL
            with pytest.raises(Unauthorized):
                await control.authenticate(secret)
        finally:
            await store.close()
