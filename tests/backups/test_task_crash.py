"""A capture task that crashes on a bug (an exception no step expects) is supervised:
logged with its traceback in logfmt, counted on /metrics, and its backup failed, never
left ``running``. Real PostgreSQL add-on and moto's S3; only the crashing step is swapped."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import pytest

from control.backups import pg
from control.backups.records import Status
from kit.logfmt import LogfmtFormatter
from tests.backups.conftest import Env, fill

CRASHES = "slipway_backup_task_crashes_total"


class Bug(Exception):
    """Nothing in the backup path catches this: it stands for a programming error."""


def crash(*args: Any, **kwargs: Any) -> NoReturn:
    raise Bug("a bug in the step")


@pytest.mark.parametrize("step", ["capture", "verify"])
async def test_a_crashed_capture_task_is_logged_counted_and_failed(
    env: Env, step: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = await env.app_with_db("crashy")
    await fill(db, rows=50)
    assert env.registry.get_sample_value(CRASHES) == 0
    monkeypatch.setattr(pg, step, crash)
    with caplog.at_level(logging.ERROR, logger="control.backups.service"):
        backup = await env.backups.capture("crashy")
    assert backup.status is Status.FAILED
    assert backup.error == "internal error (Bug)"
    status, listed, _ = await env.api.call("GET", "/apps/crashy/pg-backups")
    assert status == 200
    assert [(b["name"], b["status"]) for b in listed] == [(backup.name, "failed")]
    assert env.registry.get_sample_value(CRASHES) == 1
    assert any(f"{backup.name} FAILED: internal error" in line for line in env.lines.of("crashy"))
    [record] = [r for r in caplog.records if r.getMessage() == "backup task crashed"]
    line = LogfmtFormatter().format(record)
    assert "level=error" in line
    assert f"backup={backup.name}" in line
    assert "app=crashy" in line
    assert "traceback=" in line
    assert "Bug: a bug in the step" in line
    assert "in crash" in line  # the traceback reaches the crashing step

    # The add-on is not wedged: the next capture runs (and succeeds) once the bug is gone.
    monkeypatch.undo()
    again = await env.backups.capture("crashy")
    assert again.status is Status.SUCCEEDED, again.error
    assert env.registry.get_sample_value(CRASHES) == 1
