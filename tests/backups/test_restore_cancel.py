"""pg:backups:cancel of a restore in the control plane's process (and another replica's):
pg_restore is stopped midway, with its process group and its server backend, the record
says cancelled, the database keeps what it had, and the next restore runs."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from control.backups import records, service
from control.backups.records import Restore, Status
from tests.backups.conftest import (
    SLOW_ROW,
    SLOW_ROWS,
    Env,
    as_tenant,
    backends_of,
    fill_slow,
    group_members,
    loading_slow,
    processes_with,
    query,
    throttle,
)
from tests.backups.test_cli import slipway as cli
from tests.backups.test_replicas import another_replica
from tests.helpers import eventually


async def restoring_midway(env: Env) -> tuple[str, asyncio.Task[Any], str, int]:
    """prod's b001 being restored into prod through the API, its COPY of ``slow`` running
    (more than 6 s from its end), prod's ``slow`` cut to 5 rows before: the database, the
    request, the restore's tag and its pg_restore's pid."""
    db = await env.app_with_db("prod")
    await fill_slow(db)
    backup = await env.backups.capture("prod")
    assert backup.status is Status.SUCCEEDED, backup.error
    await as_tenant(db, "DELETE FROM slow WHERE id > 5")
    await throttle(db, SLOW_ROW)
    call = asyncio.create_task(
        env.api.call("POST", "/apps/prod/pg-restores", json={"backup": "b001"})
    )
    tag = await eventually(lambda: loading_slow(db), what="pg_restore's COPY of slow")
    [pid] = processes_with(tag)
    assert os.getpgid(pid) == pid  # it leads a process group of its own
    return db, call, tag, pid


async def stopped(db: str, call: asyncio.Task[Any], tag: str, pid: int) -> dict[str, Any]:
    """The restore request's answer, once pg_restore, its group and its backend are gone
    and the database is as it was."""
    status, answered, _ = await asyncio.wait_for(call, timeout=30)
    assert status == 409, answered
    assert answered["id"] == "restore_cancelled"
    assert "keeps the data it had" in answered["message"]
    assert processes_with(tag) == []
    assert group_members(pid) == []
    await eventually(lambda: _no(backends_of(tag)), what="the restore's backend ended")
    # One transaction, stopped before its COMMIT: nothing of it remains.
    assert await query(db, "SELECT count(*) FROM slow") == [(5,)]
    return dict(answered)


async def _no(count: Any) -> bool:
    return await count == 0


async def restores_again(env: Env, db: str) -> None:
    await throttle(db, None)
    status, body, _ = await env.api.call("POST", "/apps/prod/pg-restores", json={"backup": "b001"})
    assert status == 200, body
    assert await query(db, "SELECT count(*) FROM slow") == [(SLOW_ROWS,)]


async def test_cancel_stops_a_running_restore_and_the_database_keeps_what_it_had(
    env: Env,
) -> None:
    db, call, tag, pid = await restoring_midway(env)
    status, body, _ = await env.api.call("POST", "/apps/prod/pg-backups/running/actions/cancel")
    assert status == 200, body
    assert body["kind"] == "restore"
    assert body["status"] == "cancelled"
    assert body["source_app"] == "prod"
    assert body["backup"] == "b001"
    assert body["finished_at"] is not None
    await stopped(db, call, tag, pid)
    record = await env.backups.get_restore("prod", body["id"])
    assert record.status is Status.CANCELLED
    assert record.name == body["name"]
    assert any(
        f"Restore {record.name}" in line and "cancelled" in line for line in env.lines.of("prod")
    )
    # Nothing is left running or locked: the next restore runs, and restores.
    await restores_again(env, db)


async def test_a_token_for_another_app_cannot_cancel_its_restore(env: Env) -> None:
    db, call, tag, pid = await restoring_midway(env)
    await env.app_with_db("prod-pr-9")
    tokens = {}
    for app in ("prod", "prod-pr-9"):
        status, minted, _ = await env.api.call(
            "POST", "/tokens", json={"name": f"for-{app}", "app": app}
        )
        assert status == 201, minted
        tokens[app] = minted["token"]
    cancel = "/apps/prod/pg-backups/running/actions/cancel"
    status, body, _ = await env.api.call("POST", cancel, token=tokens["prod-pr-9"])
    assert status == 403, body
    status, body, _ = await env.api.call(
        "POST", "/apps/prod/pg-backups/r001/actions/cancel", token=tokens["prod-pr-9"]
    )
    assert status == 403, body
    # Refused: it goes on.
    assert not call.done()
    assert await backends_of(tag) == 1
    [restore] = await _running(env)
    assert restore.status is Status.RUNNING
    # prod's own token may, as it may restore.
    status, body, _ = await env.api.call(
        "POST", f"/apps/prod/pg-backups/{restore.name}/actions/cancel", token=tokens["prod"]
    )
    assert status == 200, body
    assert body["status"] == "cancelled"
    await stopped(db, call, tag, pid)


async def _running(env: Env) -> list[Restore]:
    async with env.api.control.store.tx(write=False) as tx:
        return await records.running_restores(tx, await tx.get_app("prod"))


async def test_a_restore_stops_when_another_replica_cancels_it(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # How often the restoring replica reads its record: short, so the test is.
    monkeypatch.setattr(service, "RESTORE_POLL", 0.1)
    db, call, tag, pid = await restoring_midway(env)
    async with another_replica(env) as (other, _):
        cancelled = await other.cancel("prod")
    assert cancelled.status is Status.CANCELLED
    await stopped(db, call, tag, pid)
    # The restoring replica settled nothing over it.
    assert (await env.backups.get_restore("prod", cancelled.id)).status is Status.CANCELLED
    assert not any("Restored prod's b001" in line for line in env.lines.of("prod"))
    await restores_again(env, db)


async def test_the_command_line_says_what_a_cancelled_restore_left(env: Env) -> None:
    db, call, tag, pid = await restoring_midway(env)
    [record] = await _running(env)
    result = await cli(env, "pg:backups:cancel", "--app", "prod")
    first, said = result.output.splitlines()[0], result.output.replace("\n", " ")
    assert first == f"{record.name}: cancelled", result.output
    assert "runs in one transaction" in said
    assert "keeps the data it had" in said
    await stopped(db, call, tag, pid)
