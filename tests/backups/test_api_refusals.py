"""Bad input to the pg:backups routes gets a clear 4xx; no bucket configured, a 503."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.backups.conftest import Env
from tests.control.conftest import running_api


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "ident"),
    [
        ("PUT", "/apps/prod/pg-backup-schedules", {"at": "2am"}, 422, "invalid_schedule"),
        ("PUT", "/apps/prod/pg-backup-schedules", {"at": "02:00 Nowhere/Land"}, 422,
         "invalid_schedule"),
        ("PUT", "/apps/prod/pg-backup-schedules", {}, 422, "invalid_schedule"),
        ("PUT", "/apps/prod/pg-backup-schedules", {"at": "02:00", "daily": 0}, 422,
         "invalid_retention"),
        ("PUT", "/apps/prod/pg-backup-schedules", {"at": "02:00", "daily": True}, 422,
         "invalid_params"),
        ("POST", "/apps/prod/pg-backups", {"addon": "REDIS"}, 404, "addon_not_found"),
        ("POST", "/apps/prod/pg-backups", {"when": "now"}, 422, "unknown_fields"),
        ("POST", "/apps/prod/pg-backups", [1], 400, "bad_request"),
        ("GET", "/apps/prod/pg-backups/zzz", None, 404, "backup_not_found"),
        ("GET", "/apps/prod/pg-backups/b042", None, 404, "backup_not_found"),
        ("POST", "/apps/prod/pg-backups/latest/actions/download", None, 404, "no_backup"),
        ("POST", "/apps/prod/pg-backups/running/actions/cancel", None, 404, "not_running"),
        ("POST", "/apps/prod/pg-restores", {"source_app": "../x"}, 422, "invalid_name"),
        ("POST", "/apps/prod/pg-restores", {"source_app": "nope"}, 404, "app_not_found"),
        ("DELETE", "/apps/prod/pg-backup-schedules/DATABASE", None, 404, "no_schedule"),
        ("GET", "/apps/ghost/pg-backups", None, 404, "app_not_found"),
        ("GET", "/apps/prod/pg-backups?x=1", None, 400, "bad_request"),
    ],
)  # fmt: skip
async def test_bad_requests_are_refused_with_a_reason(
    env: Env, method: str, path: str, body: Any, status: int, ident: str
) -> None:
    await env.app_with_db("prod")
    got, answer, _ = await env.api.call(method, path, json=body)
    assert got == status, answer
    assert answer["id"] == ident, answer
    assert answer["message"]


async def test_a_capture_while_one_runs_is_refused(env: Env) -> None:
    await env.app_with_db("prod")
    first = await env.backups.start_capture("prod")
    status, body, _ = await env.api.call("POST", "/apps/prod/pg-backups")
    assert status == 409, body
    assert first.name in body["message"]
    await env.backups.wait(first)


async def test_no_token_no_backups(env: Env) -> None:
    await env.app_with_db("prod")
    status, body, _ = await env.api.call("GET", "/apps/prod/pg-backups", token=None)
    assert status == 401, body


async def test_without_a_bucket_the_routes_say_how_to_configure_one(tmp_path: Path) -> None:
    async with running_api(f"sqlite+aiosqlite:///{tmp_path}/state.db", tmp_path) as api:
        status, _, _ = await api.call("POST", "/apps", json={"name": "prod"})
        assert status == 201
        status, body, _ = await api.call("GET", "/apps/prod/pg-backups")
    assert status == 503
    assert "SLIPWAY_BACKUP_BUCKET" in body["message"]
