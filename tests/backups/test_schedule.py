"""Schedules on a fake clock: due times in a zone, retention pruning, staleness made loud."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from control.backups import records, schedule
from control.backups.pg import compare
from control.errors import NotFound, Unprocessable
from tests.backups.conftest import Env, fill
from tests.helpers import eventually

PARIS = ZoneInfo("Europe/Paris")


def paris(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=PARIS).timestamp()


def test_a_schedule_time_reads_as_a_wall_clock_time_in_its_zone() -> None:
    at = schedule.parse_at("02:00 Europe/Paris")
    assert str(at) == "02:00 Europe/Paris"
    assert schedule.next_run(at, paris(2026, 3, 1, 12, 0)) == paris(2026, 3, 2, 2, 0)
    assert schedule.next_run(at, paris(2026, 3, 2, 1, 59)) == paris(2026, 3, 2, 2, 0)
    # Across the spring change (29 March 2026) it is still 02:00 local... which does not
    # exist that night: zoneinfo folds it forward to 03:00, an hour later in UTC terms.
    spring = schedule.next_run(at, paris(2026, 3, 28, 12, 0))
    assert dt.datetime.fromtimestamp(spring, PARIS).date() == dt.date(2026, 3, 29)
    assert schedule.parse_at("23:30").timezone == "UTC"


@pytest.mark.parametrize("text", ["2am", "24:00", "02:60", "02:00 Mars/Olympus", ""])
def test_a_bad_schedule_time_is_refused_with_the_form_it_wants(text: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        schedule.parse_at(text)
    assert "02:00 Europe/Paris" in caught.value.message or "IANA" in caught.value.message


def test_retention_keeps_the_newest_of_each_recent_day_and_week() -> None:
    day = 86400.0
    start = paris(2026, 1, 1, 2, 0)  # a Thursday
    backups = [schedule.Kept(f"d{i}", start + i * day) for i in range(30)]
    keep = schedule.retained(backups, daily=3, weekly=2, timezone="Europe/Paris")
    # The three newest days, and the newest of the newest two ISO weeks (d29 is one of them).
    assert {"d29", "d28", "d27"} <= keep
    assert len(keep) == 4
    (week_before,) = keep - {"d29", "d28", "d27"}
    assert dt.datetime.fromtimestamp(start + int(week_before[1:]) * day, PARIS).weekday() == 6


def test_staleness_is_one_and_a_half_intervals_without_a_verified_success() -> None:
    assert not schedule.stale(last_success=1000.0, since=0.0, now=1000.0 + 1.4 * 86400)
    assert schedule.stale(last_success=1000.0, since=0.0, now=1000.0 + 1.6 * 86400)
    assert schedule.stale(last_success=None, since=0.0, now=1.6 * 86400)


def test_verification_names_the_table_that_differs() -> None:
    source = {"public.a": [3, 10], "public.b": [1, 5]}
    assert compare(source, source) == []
    assert compare(source, {"public.a": [2, 10], "public.b": [1, 5]}) == [
        "public.a has 2 rows, the source had 3"
    ]
    assert compare(source, {"public.a": [3, 11], "public.b": [1, 5]}) == [
        "public.a's checksum differs from the source's"
    ]
    assert compare(source, {"public.a": [3, 10]}) == ["public.b is missing from the restore"]


async def test_the_scheduler_runs_daily_and_prunes_to_its_retention(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db, rows=20)
    env.clock.now = paris(2026, 5, 1, 12, 0)
    status, body, _ = await env.api.call(
        "PUT",
        "/apps/prod/pg-backup-schedules",
        json={"at": "02:00 Europe/Paris", "daily": 2, "weekly": 1},
    )
    assert status == 200, body
    assert body["at"] == "02:00 Europe/Paris"
    # Noon: nothing due until 02:00 tomorrow.
    assert await env.backups.tick(env.clock.now) == []
    names = []
    for day in range(2, 6):
        env.clock.now = paris(2026, 5, day, 2, 0, 30)
        ran = await env.backups.tick(env.clock.now)
        assert [b.status.value for b in ran] == ["succeeded"]
        names.append(ran[0].name)
        # A second tick the same night runs nothing more.
        env.clock.now += 60
        assert await env.backups.tick(env.clock.now) == []
    assert names == ["a001", "a002", "a003", "a004"]
    kept = [b.name for b in await env.backups.backups("prod")]
    # daily=2 keeps a003 and a004; weekly=1 keeps the newest of this week: also a004.
    assert kept == ["a003", "a004"]
    assert any("Retention removed" in line for line in env.lines.of("prod"))
    listed = env.s3.list_objects_v2(Bucket=env.bucket).get("Contents", [])
    assert len(listed) == 2
    # A manual capture is never pruned.
    await env.backups.capture("prod")
    env.clock.now = paris(2026, 5, 6, 2, 1)
    await env.backups.tick(env.clock.now)
    assert [b.name for b in await env.backups.backups("prod")] == ["a004", "b005", "a006"]


async def test_backups_go_stale_loudly_when_the_schedule_stops(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db, rows=20)
    env.clock.now = paris(2026, 5, 1, 12, 0)
    await env.backups.set_schedule("prod", "DATABASE", "02:00 Europe/Paris")
    env.clock.now = paris(2026, 5, 2, 2, 0, 5)
    [done] = await env.backups.tick(env.clock.now)
    label = {"app": "prod", "addon": done.addon}
    metric = "slipway_backup_last_success_timestamp_seconds"
    assert env.registry.get_sample_value(metric, label) == pytest.approx(env.clock.now)
    assert env.registry.get_sample_value("slipway_backup_stale", label) is None
    [health] = (await env.api.call("GET", "/apps/prod/pg-backup-health"))[1]
    assert health["state"] == "green"
    # The scheduler stops (no tick for two days): health, read now, is red.
    env.clock.now += 2 * 86400
    status, [health], _ = await env.api.call("GET", "/apps/prod/pg-backup-health")
    assert status == 200
    assert health["state"] == "red"
    # Once a tick comes and its capture fails (the database is gone), the stale gauge and
    # the app's log say so; the last success stays where it was.
    await env.backups.set_schedule("prod", "DATABASE", "02:00 Europe/Paris")
    async with env.api.control.store.tx() as tx:
        await tx.conn.exec_driver_sql(
            "UPDATE pg_backup_schedules SET created_at = created_at - 3 * 86400"
        )
    await env.api.control.provisioners["postgres"].destroy(db)
    env.clock.now += 86400
    [failed] = await env.backups.tick(env.clock.now)
    assert failed.status.value == "failed"
    assert env.registry.get_sample_value("slipway_backup_stale", label) == 1.0
    assert env.registry.get_sample_value(metric, label) == pytest.approx(paris(2026, 5, 2, 2, 0, 5))
    assert any("STALE" in line for line in env.lines.of("prod"))
    assert any("FAILED" in line for line in env.lines.of("prod"))


async def test_the_scheduler_task_runs_due_schedules_and_fails_interrupted_backups(
    env: Env,
) -> None:
    db = await env.app_with_db("prod")
    await fill(db, rows=20)
    env.clock.now = paris(2026, 5, 1, 12, 0)
    # A backup a stopped control plane left running: failed at the next start, with why.
    async with env.api.control.store.tx() as tx:
        app = await tx.get_app("prod")
        left = await records.add_backup(
            tx, app, kind="manual", addon="x", resource=db, key_prefix="p/", now=env.clock.now
        )
    await env.backups.set_schedule("prod", "DATABASE", "02:00 Europe/Paris")
    env.clock.now = paris(2026, 5, 2, 2, 0, 1)
    task = asyncio.create_task(env.backups.run(interval=0.05))
    try:

        async def scheduled() -> list[str]:
            return [b.name for b in await env.backups.backups("prod") if b.kind == "scheduled"]

        names: list[str] = await eventually(scheduled, timeout=60)
        assert names == ["a002"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    interrupted = await env.backups.get("prod", left.name)
    assert interrupted.status.value == "failed"
    assert "stopped during the backup" in interrupted.error


async def test_a_scheduled_run_started_a_little_early_takes_its_time_once(env: Env) -> None:
    """A CronJob's pod on a node whose clock runs ahead (``slipway pg-backups tick``)."""
    db = await env.app_with_db("prod")
    await fill(db, rows=20)
    env.clock.now = paris(2026, 5, 1, 12, 0)
    await env.backups.set_schedule("prod", "DATABASE", "02:00 Europe/Paris")
    # Too early by far: nothing.
    assert await env.backups.run_schedule("prod", "DATABASE", paris(2026, 5, 2, 1, 50)) is None
    env.clock.now = paris(2026, 5, 2, 1, 58)  # the record's times (retention reads them)
    early = await env.backups.run_schedule("prod", "DATABASE", env.clock.now)
    assert early is not None
    assert early.status.value == "succeeded"
    # 02:00 itself comes: that run was the one, not a second.
    assert await env.backups.run_schedule("prod", "DATABASE", paris(2026, 5, 2, 2, 0, 5)) is None
    assert await env.backups.tick(paris(2026, 5, 2, 2, 1)) == []
    [item] = await env.backups.schedules("prod")
    assert item.last_run_at == paris(2026, 5, 2, 2, 0)
    # The next day's run, on time, runs.
    env.clock.now = paris(2026, 5, 3, 2, 0, 5)
    later = await env.backups.run_schedule("prod", "DATABASE", env.clock.now)
    assert later is not None
    assert [b.name for b in await env.backups.backups("prod")] == ["a001", "a002"]
    await env.backups.unschedule("prod")
    with pytest.raises(NotFound, match="no backup schedule"):
        await env.backups.run_schedule("prod", "DATABASE", paris(2026, 5, 4, 2, 0, 5))


async def test_a_destroyed_add_on_takes_its_schedule_so_no_run_fails_on_it(env: Env) -> None:
    await env.app_with_db("prod")
    item = await env.backups.set_schedule("prod", "DATABASE", "02:00 UTC")
    status, body, _ = await env.api.call("DELETE", f"/apps/prod/addons/{item.addon}")
    assert status == 200, body
    assert await env.backups.schedules("prod") == []
    env.clock.now += 3 * 86400
    assert await env.backups.tick(env.clock.now) == []
    assert not [line for line in env.lines.of("prod") if "did not start" in line]
    # One left by a destroy from before is dropped at the scheduler's start.
    await env.app_with_db("shop")
    kept = await env.backups.set_schedule("shop", "DATABASE", "03:00 UTC")
    async with env.api.control.store.tx() as tx:
        orphan = dataclasses.replace(kept, addon="postgres-gone")
        await records.put_schedule(tx, await tx.get_app("shop"), orphan)
    assert await env.backups.drop_orphans() == 1
    assert await env.backups.schedules("shop") == [kept]
