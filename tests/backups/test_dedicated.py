"""Backups of dedicated Postgres add-ons: captured, verified and restored on their own
instance, as its own admin, never through the shared server.

The instance is a real PostgreSQL of its own (``tests/pgserver.py``) set up as the
StatefulSet's: superuser ``addon`` with its password (scram over TCP), database
``addon``, TLS, and a URL with ``sslmode=require``.
"""

from __future__ import annotations

import psycopg
import pytest

from control.backups.records import Status
from control.backups.service import Backups
from control.errors import NotFound, Unprocessable
from tests.backups.conftest import (  # noqa: F401  (fixtures)
    Dedicated,
    Env,
    attach_dedicated,
    dedicated,
    detach,
    env,
    moto_server,
)


def on_instance(instance: Dedicated, *statements: str) -> list[tuple[object, ...]]:
    """As the app would, connected as ``addon`` to its database; the last one's rows."""
    with psycopg.connect(instance.socket, autocommit=True) as conn:
        rows: list[tuple[object, ...]] = []
        for statement in statements:
            cursor = conn.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
        return rows


FILL = (
    "CREATE TABLE items (id int PRIMARY KEY, name text)",
    "INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 300) i",
)


async def test_a_dedicated_add_on_is_captured_verified_and_restored_on_its_own_instance(
    env: Env,  # noqa: F811
    dedicated: Dedicated,  # noqa: F811
) -> None:
    status, _, _ = await env.api.call("POST", "/apps", json={"name": "prod"})
    assert status == 201
    addon = await attach_dedicated(env, "prod", dedicated)
    on_instance(dedicated, *FILL)
    status, body, _ = await env.api.call("POST", "/apps/prod/pg-backups", json={"wait": True})
    assert status == 201, body
    assert body["status"] == "succeeded", body
    backup = await env.backups.get("prod", body["name"])
    assert backup.resource == addon.resource
    assert backup.tables == {"public.items": [300, backup.tables["public.items"][1]]}
    # The verification's scratch database was made and dropped there, as its admin.
    log = dedicated.server_log()
    scratch = env.backups.settings.scratch_prefix
    assert f'CREATE DATABASE "{scratch}' in log
    assert f'DROP DATABASE IF EXISTS "{scratch}' in log
    # A restore puts the rows back into the instance's database.
    on_instance(dedicated, "DELETE FROM items WHERE id > 10", "CREATE TABLE later (x int)")
    status, body, _ = await env.api.call(
        "POST", "/apps/prod/pg-restores", json={"backup": backup.name}
    )
    assert status == 200, body
    assert on_instance(dedicated, "SELECT count(*) FROM items") == [(300,)]
    owner = "SELECT tableowner FROM pg_tables WHERE tablename = 'items'"
    assert on_instance(dedicated, owner) == [("addon",)]
    # Verified again on demand, on the same instance.
    status, body, _ = await env.api.call(
        "POST", f"/apps/prod/pg-backups/{backup.name}/actions/verify"
    )
    assert status == 200, body
    assert body["status"] == "succeeded"
    assert dedicated.server_log().count(f'CREATE DATABASE "{scratch}') == 2
    await detach(env, addon)


async def test_no_shared_server_is_needed_and_a_gone_instance_leaves_its_backups_alone(
    env: Env,  # noqa: F811
    dedicated: Dedicated,  # noqa: F811
) -> None:
    status, _, _ = await env.api.call("POST", "/apps", json={"name": "solo"})
    assert status == 201
    addon = await attach_dedicated(env, "solo", dedicated)
    on_instance(dedicated, *FILL)
    # A control plane whose only Postgres add-ons are dedicated: no shared admin DSN.
    alone = Backups(
        store=env.api.control.store,
        admin_dsn=None,
        s3=env.s3,
        settings=env.backups.settings,
        sink=env.lines,
        clock=env.clock,
    )
    try:
        done = await alone.capture("solo")
        assert done.status is Status.SUCCEEDED, done.error
        await detach(env, addon)
        # Its instance is gone: a verification says so and the backup stays succeeded.
        with pytest.raises(NotFound, match="add-on"):
            await alone.reverify("solo", done.name)
        assert (await alone.get("solo", done.name)).status is Status.SUCCEEDED
        # A shared tenant cannot be reached without the shared server's admin DSN.
        db = await env.app_with_db("shared")
        with pytest.raises(Unprocessable, match="SLIPWAY_ADDON_POSTGRES_DSN"):
            await alone.restore("solo", done.name, target_app="shared")
        assert db.startswith("slipway_")
    finally:
        await alone.close()
