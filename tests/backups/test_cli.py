"""The pg:backups commands through click's CliRunner against the running API."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from click.testing import CliRunner, Result

from control.cli import main
from tests.backups.conftest import Env, fill, query
from tests.control.conftest import ADMIN_TOKEN


async def slipway(env: Env, *args: str, ok: bool = True) -> Result:
    runner = CliRunner(env={"SLIPWAY_API_URL": env.api.base, "SLIPWAY_TOKEN": ADMIN_TOKEN})
    # The CLI blocks on HTTP; the API answers on this loop: the CLI runs in a thread.
    result = await asyncio.to_thread(runner.invoke, main, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result


async def test_capture_list_download_restore_from_the_command_line(
    env: Env, tmp_path: Path
) -> None:
    prod = await env.app_with_db("prod")
    review = await env.app_with_db("prod-pr-1")
    await fill(prod, rows=100)
    captured = await slipway(env, "pg:backups:capture", "--app", "prod")
    assert "b001: succeeded" in captured.output
    listed = await slipway(env, "pg:backups", "--app", "prod")
    assert "b001" in listed.output
    assert "succeeded" in listed.output
    dump = tmp_path / "prod.dump"
    await slipway(env, "pg:backups:download", "--app", "prod", "-o", str(dump))
    contents = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, check=True)
    assert b"TABLE DATA public customers" in contents.stdout
    refused = await slipway(env, "pg:backups:restore", "prod::b001", "--app", "prod-pr-1", ok=False)
    assert "--confirm prod-pr-1" in refused.output
    await slipway(
        env, "pg:backups:restore", "prod::b001", "--app", "prod-pr-1", "--confirm", "prod-pr-1"
    )
    assert await query(review, "SELECT count(*) FROM customers") == [(100,)]
    scheduled = await slipway(
        env, "pg:backups:schedule", "--app", "prod", "--at", "02:00 Europe/Paris", "--daily", "3"
    )
    assert "02:00 Europe/Paris" in scheduled.output
    schedules = await slipway(env, "pg:backups:schedules", "--app", "prod")
    assert "green" in schedules.output
    bad = await slipway(env, "pg:backups:schedule", "--app", "prod", "--at", "2am", ok=False)
    assert "02:00 Europe/Paris" in bad.output
    await slipway(env, "pg:backups:delete", "b001", "--app", "prod", "--confirm", "prod")
    assert "b001" not in (await slipway(env, "pg:backups", "--app", "prod")).output
