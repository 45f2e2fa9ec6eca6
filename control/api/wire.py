"""Records as the API sends them (JSON objects, Heroku's field names where they exist)."""

from __future__ import annotations

import time
from typing import Any

from control.addons.env import config_vars
from control.models import Addon, App, AuditEntry, Build, Domain, Formation, Release, Token
from control.releasing import Dyno
from control.review.records import ReviewStatus
from kit.redact import mask_data, mask_text, mask_url


def iso(at: float) -> str:
    """ISO 8601 in UTC with a Z, as Heroku writes times."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def app(item: App) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "current_release": item.current_release,
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "maintenance": item.maintenance,
    }


def release(item: Release, *, current: int | None = None) -> dict[str, Any]:
    return {
        "version": item.version,
        "status": item.status.value,
        "current": current == item.version,
        "description": item.description,
        "artifact": item.artifact,
        "procfile": item.procfile,
        # Names, not values: a release list is read far more widely than config-vars.
        "config_var_names": sorted({*item.config, *item.addon_env}),
        "output": mask_text(item.output),
        "user": {"actor": item.actor},
        "created_at": iso(item.created_at),
    }


def formation(item: Formation) -> dict[str, Any]:
    return {
        "type": item.type,
        "quantity": item.quantity,
        "idle_after": item.idle_after,
        "min_scale": item.min_scale,
        "max_scale": item.max_scale,
        "never_sleep": item.never_sleep,
        "size": item.size,
        "autoscale": item.autoscale,
        "queue": item.queue,
        "updated_at": iso(item.updated_at),
    }


def dyno(item: Dyno) -> dict[str, Any]:
    return {
        "name": item.name,
        "type": item.type,
        "state": item.state.value,
        "release": {"version": item.release},
        "reason": item.reason,
        "size": item.size,
        "memory": None
        if item.usage is None
        else {
            "rss": item.usage["memory_rss"],
            "cache": item.usage["memory_cache"],
            "swap": item.usage["memory_swap"],
            "quota": item.usage["memory_quota"],
        },
        "cpu": None
        if item.usage is None
        else {"seconds": item.usage["cpu_seconds"], "load": item.usage["load"]},
        # Heroku's field: when the dyno's current process started (``ps``'s "since").
        "created_at": None if item.started_at is None else iso(item.started_at),
    }


def domain(item: Domain, *, default: bool) -> dict[str, Any]:
    return {
        "hostname": item.hostname,
        "app": {"name": item.app},
        "kind": "default" if default else "custom",
        "created_at": iso(item.created_at),
    }


def addon(item: Addon) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "app": {"name": item.app},
        "service": item.service,
        "plan": {"name": f"{item.service}:{item.plan}"},
        "attachment": {"name": item.attachment},
        "config_vars": config_vars(item),
        "created_at": iso(item.created_at),
        **({"provision_message": item.provision_message} if item.provision_message else {}),
    }


def token(item: Token) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "admin": item.admin,
        "app": None if item.app is None else {"name": item.app},
        "created_at": iso(item.created_at),
    }


def audit(item: AuditEntry) -> dict[str, Any]:
    return {
        "id": item.id,
        "at": iso(item.at),
        "actor": item.actor,
        "action": item.action,
        "app": item.app,
        # Masked when written (Tx.record); again here for entries older than that.
        "detail": mask_data(item.detail),
    }


def build(item: Build, *, output_stream_url: str | None) -> dict[str, Any]:
    return {
        "id": item.id,
        "app": {"name": item.app},
        "status": item.status.value,
        "source_blob": {"url": mask_url(item.source_url), "version": item.source_version},
        "commit": item.commit,
        "artifact": item.artifact,
        "digest": item.digest,
        "procfile": item.procfile,
        "release": None
        if item.release is None
        else {
            "version": item.release,
            "status": None if item.release_status is None else item.release_status.value,
        },
        "output_stream_url": output_stream_url,
        "output": mask_text(item.output),
        "user": {"actor": item.actor},
        "created_at": iso(item.created_at),
        "updated_at": iso(item.finished_at or item.created_at),
    }


def review_status(status: ReviewStatus) -> dict[str, Any]:
    """What the app's last review-app plan (or staging deploy) came to, and why."""
    return {
        "app": {"name": status.app},
        "state": status.state.value,
        "reason": mask_text(status.reason),
        "commit": status.commit,
        "delivery": status.delivery,
        "updated_at": iso(status.updated_at),
    }
