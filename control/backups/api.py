"""The pg:backups routes: every one needs the app in its path; a restore also the source app.

Registered by ``control/api/app.py`` beside the main table. Without a
bucket configured (``SLIPWAY_BACKUP_BUCKET``) each answers 503 saying so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from control.api.routes import CONTROL, Call, bearer, reply
from control.api.wire import iso
from control.backups.records import Backup, Restore, Schedule
from control.backups.service import DAILY, WEEKLY, Backups, Health
from control.errors import ApiError, BadRequest, Unprocessable
from control.rules import validate_app_name

BACKUPS: web.AppKey[Backups] = web.AppKey("backups", Backups)


class NotConfigured(ApiError):
    status = 503
    default_id = "backups_not_configured"


def backup_wire(backup: Backup) -> dict[str, Any]:
    return {
        "name": backup.name,
        "app": backup.app,
        "addon": backup.addon,
        "kind": backup.kind,
        "status": backup.status.value,
        "error": backup.error or None,
        "size": backup.size,
        "dump_size": backup.dump_size,
        "object_sha256": backup.object_sha256,
        "dump_sha256": backup.dump_sha256,
        "tables": len(backup.tables) if backup.tables is not None else None,
        "started_at": iso(backup.started_at),
        "finished_at": iso(backup.finished_at) if backup.finished_at is not None else None,
        "verified_at": iso(backup.verified_at) if backup.verified_at is not None else None,
        "duration": (
            round(backup.finished_at - backup.started_at, 3)
            if backup.finished_at is not None
            else None
        ),
    }


def restore_wire(restore: Restore) -> dict[str, Any]:
    return {
        "id": restore.id,
        "name": restore.name,
        "kind": "restore",
        "app": restore.app,
        "addon": restore.addon,
        "source_app": restore.source_app,
        "backup": restore.backup,
        "status": restore.status.value,
        "error": restore.error or None,
        "started_at": iso(restore.started_at),
        "finished_at": iso(restore.finished_at) if restore.finished_at is not None else None,
    }


def schedule_wire(item: Schedule) -> dict[str, Any]:
    return {
        "addon": item.addon,
        "at": f"{item.hour:02d}:{item.minute:02d} {item.timezone}",
        "daily": item.daily,
        "weekly": item.weekly,
        "last_run_at": iso(item.last_run_at) if item.last_run_at is not None else None,
    }


def health_wire(item: Health) -> dict[str, Any]:
    return {
        "addon": item.addon,
        "state": item.state,
        "reason": item.reason,
        "last_success_at": iso(item.last_success) if item.last_success is not None else None,
    }


async def _fields(call: Call, allowed: dict[str, type]) -> dict[str, Any]:
    body = await call.body() if call.request.body_exists else {}
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Unprocessable(f"unknown fields: {', '.join(unknown)}", id="unknown_fields")
    for name, kind in allowed.items():
        value = body.get(name)
        # bool is an int in Python: a retention count of true is no count.
        wrong = kind is int and isinstance(value, bool)
        if value is not None and (wrong or not isinstance(value, kind)):
            raise Unprocessable(f"{name} must be a {kind.__name__}", id="invalid_params")
    return body


def _backups(call: Call) -> Backups:
    found = call.request.app.get(BACKUPS)
    if found is None:
        raise NotConfigured(
            "backups are not configured on this control plane: set SLIPWAY_BACKUP_BUCKET "
            "(and SLIPWAY_BACKUP_S3_ENDPOINT for a non-AWS S3); docs/backups.md"
        )
    return found


def _name(call: Call) -> str:
    return call.request.match_info["backup"]


async def list_backups(call: Call) -> web.Response:
    return reply([backup_wire(b) for b in await _backups(call).backups(call.app)])


async def capture(call: Call) -> web.Response:
    body = await _fields(call, {"addon": str, "wait": bool})
    backups = _backups(call)
    backup = await backups.start_capture(call.app, body.get("addon") or "DATABASE")
    if body.get("wait"):
        backup = await backups.wait(backup)
    return reply(backup_wire(backup), 201)


async def show(call: Call) -> web.Response:
    return reply(backup_wire(await _backups(call).get(call.app, _name(call))))


async def delete(call: Call) -> web.Response:
    return reply(backup_wire(await _backups(call).delete(call.app, _name(call))))


async def cancel(call: Call) -> web.Response:
    """The app's running capture or restore: ``running`` (the newest), b003, or r007."""
    name = _name(call)
    found = await _backups(call).cancel(call.app, None if name == "running" else name)
    return reply(restore_wire(found) if isinstance(found, Restore) else backup_wire(found))


async def download(call: Call) -> web.Response:
    name = _name(call)
    found = await _backups(call).download(call.app, None if name == "latest" else name)
    return reply(
        {
            "backup": backup_wire(found.backup),
            "url": found.url,
            "key": found.key,
            "expires_in": _backups(call).settings.url_expires,
        }
    )


async def verify(call: Call) -> web.Response:
    return reply(backup_wire(await _backups(call).reverify(call.app, _name(call))))


async def restore(call: Call) -> web.Response:
    """Into ``{app}``'s add-on, from ``source_app``'s backup (default: the same app).

    In the control plane's process: 200 once restored. As a Job (backups on Kubernetes):
    201 with the restore's record, ``running`` unless ``wait``, as a capture answers.
    """
    body = await _fields(call, {"source_app": str, "backup": str, "addon": str, "wait": bool})
    source = body.get("source_app") or call.app
    if source != call.app:
        validate_app_name(source)
        # Reading another app's data: the caller must be allowed on both apps.
        call.principal.require_app(source)
    backups = _backups(call)
    target = body.get("addon") or "DATABASE"
    if backups.restores_as_jobs:
        started = await backups.start_restore(
            source, body.get("backup"), target_app=call.app, target=target
        )
        if body.get("wait"):
            started = await backups.wait_restore(started)
        return reply({"restore": restore_wire(started), "into": call.app}, 201)
    found = await backups.restore(source, body.get("backup"), target_app=call.app, target=target)
    return reply({"restored": backup_wire(found), "into": call.app})


async def list_schedules(call: Call) -> web.Response:
    return reply([schedule_wire(s) for s in await _backups(call).schedules(call.app)])


async def put_schedule(call: Call) -> web.Response:
    body = await _fields(call, {"addon": str, "at": str, "daily": int, "weekly": int})
    if not body.get("at"):
        raise Unprocessable("give the time: at, e.g. '02:00 Europe/Paris'", id="invalid_schedule")
    item = await _backups(call).set_schedule(
        call.app,
        body.get("addon") or "DATABASE",
        body["at"],
        daily=body["daily"] if body.get("daily") is not None else DAILY,
        weekly=body["weekly"] if body.get("weekly") is not None else WEEKLY,
    )
    return reply(schedule_wire(item))


async def delete_schedule(call: Call) -> web.Response:
    await _backups(call).unschedule(call.app, call.request.match_info["addon"])
    return reply({})


async def health(call: Call) -> web.Response:
    return reply([health_wire(h) for h in await _backups(call).health(call.app)])


Handler = Callable[[Call], Awaitable[web.StreamResponse]]

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/apps/{app}/pg-backups", list_backups),
    ("POST", "/apps/{app}/pg-backups", capture),
    ("GET", "/apps/{app}/pg-backups/{backup}", show),
    ("DELETE", "/apps/{app}/pg-backups/{backup}", delete),
    ("POST", "/apps/{app}/pg-backups/{backup}/actions/cancel", cancel),
    ("POST", "/apps/{app}/pg-backups/{backup}/actions/download", download),
    ("POST", "/apps/{app}/pg-backups/{backup}/actions/verify", verify),
    ("POST", "/apps/{app}/pg-restores", restore),
    ("GET", "/apps/{app}/pg-backup-schedules", list_schedules),
    ("PUT", "/apps/{app}/pg-backup-schedules", put_schedule),
    ("DELETE", "/apps/{app}/pg-backup-schedules/{addon}", delete_schedule),
    ("GET", "/apps/{app}/pg-backup-health", health),
)


def _wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        control = request.app[CONTROL]
        principal = await control.authenticate(bearer(request))
        if request.query:
            raise BadRequest("these routes take no query parameters", id="bad_request")
        principal.require_app(request.match_info["app"])
        return await handler(Call(request=request, principal=principal, control=control))

    return handle


def register(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, _wrap(handler))
