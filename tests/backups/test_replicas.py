"""Several control replicas on one store: each scheduled run is captured exactly once, and
a starting replica fails only the running backups of a process that stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
import sqlalchemy as sa

from control.backups import records
from control.backups.records import Status, pg_backup_owners
from control.backups.service import OWNER_SILENCE, Backups
from control.store.db import Store
from tests.backups.conftest import Env, backups_env, fill
from tests.backups.test_schedule import paris
from tests.control.conftest import db_url, pg_scratch, pg_url  # noqa: F401  (fixtures)
from tests.helpers import eventually
from tests.logs.conftest import Moto


@pytest.fixture
async def shared_env(
    tmp_path: Path,
    moto_server: Moto,
    db_url: str,  # noqa: F811
) -> AsyncIterator[Env]:
    """The backups' world on a store replicas can share: a SQLite file, then PostgreSQL."""
    async with backups_env(tmp_path, moto_server, db_url=db_url) as env:
        yield env


@contextlib.asynccontextmanager
async def another_replica(env: Env) -> AsyncIterator[tuple[Backups, Store]]:
    """Another control plane on the same store, bucket and clock, and its own connections
    to that store."""
    store = Store.open(env.db_url)
    other = Backups(
        store=store,
        admin_dsn=env.backups._admin_dsn,
        s3=env.s3,
        settings=env.backups.settings,
        clock=env.clock,
    )
    try:
        yield other, store
    finally:
        await other.close()
        await store.close()


async def test_two_replicas_on_one_store_capture_a_scheduled_run_once(shared_env: Env) -> None:
    env = shared_env
    db = await env.app_with_db("prod")
    await fill(db, rows=20)
    env.clock.now = paris(2026, 5, 1, 12, 0)
    await env.backups.set_schedule("prod", "DATABASE", "02:00 Europe/Paris")
    async with another_replica(env) as (other, other_store):
        env.clock.now = paris(2026, 5, 2, 2, 0, 5)
        # The other replica's tick read the schedules just before this one ran the due one,
        # and acts on what it read only after: the claim tells it the run is taken.
        async with other_store.tx(write=False) as tx:
            [read_before] = await records.list_schedules(tx)
        [done] = await env.backups.tick(env.clock.now)
        assert done.status.value == "succeeded"
        assert await other._run_due(read_before, env.clock.now) is None
        assert [b.name for b in await env.backups.backups("prod")] == ["a001"]
        # Both tick again later the same day: nothing is due for either.
        env.clock.now += 3600
        assert await asyncio.gather(env.backups.tick(env.clock.now), other.tick(env.clock.now)) == [
            [],
            [],
        ]
        # The next day both tick at once: one of them captures, once.
        env.clock.now = paris(2026, 5, 3, 2, 0, 5)
        mine, theirs = await asyncio.gather(
            other.tick(env.clock.now), env.backups.tick(env.clock.now)
        )
        assert len(mine) + len(theirs) == 1
        assert [b.name for b in await env.backups.backups("prod")] == ["a001", "a002"]


async def test_a_claim_read_before_another_replica_ran_it_is_refused(env: Env) -> None:
    await env.app_with_db("prod")
    await env.backups.set_schedule("prod", "DATABASE", "02:00 UTC")
    async with env.api.control.store.tx(write=False) as tx:
        [seen] = await records.list_schedules(tx)
    async with env.api.control.store.tx() as tx:
        assert await records.claim_run(tx, seen, now=10.0)
    async with env.api.control.store.tx() as tx:
        assert not await records.claim_run(tx, seen, now=11.0)  # what it read is gone
    # A schedule put again since it was read is not the one read: refused too.
    async with env.api.control.store.tx(write=False) as tx:
        [fresh] = await records.list_schedules(tx)
    env.clock.now += 1
    await env.backups.set_schedule("prod", "DATABASE", "03:00 UTC")
    async with env.api.control.store.tx() as tx:
        assert not await records.claim_run(tx, fresh, now=12.0)


async def test_replicas_on_one_store_fail_only_a_stopped_ones_backups(shared_env: Env) -> None:
    env = shared_env
    db = await env.app_with_db("prod")
    await fill(db, rows=20)
    async with another_replica(env) as (other, _):
        assert other.owner != env.backups.owner
        assert env.backups.owner.split(":")[1] == str(os.getpid())
        # This replica captures, so its backup's record names it as the owner.
        started = await env.backups.start_capture("prod")
        assert started.owner == env.backups.owner
        assert (await env.backups.wait(started)).status is Status.SUCCEEDED
        # Backups of three processes are running: this replica (beating), one that beat
        # long ago (stopped), and one from before owners were recorded (no owner).
        # So are restores, in-process (owned) or a Job's (no owner: left to its deadline).
        running, restores = {}, {}
        async with env.api.control.store.tx() as tx:
            app = await tx.get_app("prod")
            for owner in (env.backups.owner, "gone:1:dead", None):
                running[owner] = await records.add_backup(
                    tx, app, kind="manual", addon="x", resource=db, key_prefix="p/",
                    now=env.clock.now, owner=owner,
                )  # fmt: skip
                restores[owner] = await records.add_restore(
                    tx, app, addon="x", source_app="prod", backup="b001", now=env.clock.now,
                    owner=owner,
                )  # fmt: skip
            await records.heartbeat(
                tx, "gone:1:dead", now=env.clock.now - OWNER_SILENCE - 1, forget_before=0
            )
        await env.backups.heartbeat()
        # The other replica starts: it fails the stopped process's backups and restore only.
        await other.heartbeat()
        assert await other.fail_orphaned() == 3
        status = {o: (await env.backups.get("prod", b.name)).status for o, b in running.items()}
        assert status == {
            env.backups.owner: Status.RUNNING,
            "gone:1:dead": Status.FAILED,
            None: Status.FAILED,
        }
        assert {o: (await restored(env, r)).status for o, r in restores.items()} == {
            env.backups.owner: Status.RUNNING,
            "gone:1:dead": Status.FAILED,
            None: Status.RUNNING,
        }
        # Still beating a little later: still its own.
        env.clock.now += OWNER_SILENCE - 1
        assert await other.fail_orphaned() == 0
        # This replica stops beating: past three beats, the other takes it for stopped.
        env.clock.now += 2
        assert await other.fail_orphaned() == 2
        failed = await env.backups.get("prod", running[env.backups.owner].name)
        assert failed.status is Status.FAILED
        assert "stopped during the backup" in failed.error
        failed_restore = await restored(env, restores[env.backups.owner])
        assert failed_restore.status is Status.FAILED
        assert "stopped before recording" in failed_restore.error
        # A process never takes its own backups for dead, whatever its last beat.
        async with env.api.control.store.tx() as tx:
            mine = await records.add_backup(
                tx, app, kind="manual", addon="x", resource=db, key_prefix="p/",
                now=env.clock.now, owner=other.owner,
            )  # fmt: skip
        env.clock.now += 10 * OWNER_SILENCE
        assert await other.fail_orphaned() == 0
        assert (await other.get("prod", mine.name)).status is Status.RUNNING


async def restored(env: Env, restore: records.Restore) -> records.Restore:
    return await env.backups.get_restore("prod", restore.id)


async def seen_at(env: Env, owner: str) -> float | None:
    async with env.api.control.store.tx(write=False) as tx:
        found = await tx.conn.scalar(
            sa.select(pg_backup_owners.c.seen_at).where(pg_backup_owners.c.owner == owner)
        )
    return None if found is None else float(found)


async def test_the_scheduler_beats_while_it_runs_so_its_backups_stay_its_own(env: Env) -> None:
    db = await env.app_with_db("prod")
    async with env.api.control.store.tx() as tx:
        left = await records.add_backup(
            tx, await tx.get_app("prod"), kind="manual", addon="x", resource=db,
            key_prefix="p/", now=env.clock.now, owner=env.backups.owner,
        )  # fmt: skip
    async with another_replica(env) as (other, _):
        task = asyncio.create_task(env.backups.run(interval=0.05, heartbeat=0.05))
        try:
            owner = env.backups.owner
            await eventually(lambda: _is(seen_at(env, owner), env.clock.now))
            # Time passes (a long scheduled capture would hold the tick): the beats go on.
            env.clock.now += 5 * OWNER_SILENCE
            await eventually(lambda: _is(seen_at(env, owner), env.clock.now))
            await other.heartbeat()
            assert await other.fail_orphaned() == 0
            assert (await env.backups.get("prod", left.name)).status is Status.RUNNING
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Stopped: once it has been silent three beats, another replica fails its backup.
        env.clock.now += OWNER_SILENCE + 1
        await other.heartbeat()
        assert await other.fail_orphaned() == 1
        assert (await env.backups.get("prod", left.name)).status is Status.FAILED


async def _is(found: Awaitable[float | None], expected: float) -> bool:
    return await found == expected


async def test_a_beating_blocks_heartbeat_that_dies_is_said_at_once(
    env: Env, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`slipway pg-backups restore` beats while it restores; should the store fail under the
    heartbeat, the block goes on, so the operator is told then, not at its end."""
    beats = 0
    first = env.backups.heartbeat

    async def heartbeat() -> None:
        nonlocal beats
        beats += 1
        if beats > 1:
            raise OSError("store unreachable")
        await first()

    monkeypatch.setattr(env.backups, "heartbeat", heartbeat)
    async with env.backups.beating(every=0.01):
        await eventually(lambda: "backup heartbeat stopped" in caplog.text)
        [said] = [r for r in caplog.records if r.msg.startswith("backup heartbeat stopped")]
        assert said.levelname == "ERROR"
        assert "store unreachable" in said.error  # type: ignore[attr-defined]
