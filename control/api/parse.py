"""Request bodies to typed requests, once, at the edge: one function per body.

Each applies the rules of ``control/rules.py`` (the one statement of what is
allowed; ``schemas.py`` builds its patterns and bounds from the same
constants) and returns what ``Control`` takes. Fields a route's schema does
not name were refused before (``Call.body``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control.errors import BadRequest, Unprocessable
from control.requests import AddonCreate, Deploy, FormationChange, Rollback, TokenCreate
from control.rules import (
    formation_change,
    validate_app_name,
    validate_artifact,
    validate_attachment,
    validate_config_changes,
    validate_description,
    validate_hostname,
    validate_procfile,
    validate_token_name,
    validate_version,
)

Body = Mapping[str, Any]


def app_name(body: Body) -> str:
    """POST /apps and PATCH /apps/{app}: ``{"name": ...}``."""
    return validate_app_name(body.get("name"))


@dataclass(frozen=True, slots=True)
class AppUpdate:
    name: str | None
    maintenance: bool | None


def app_update(body: Body) -> AppUpdate:
    """PATCH /apps/{app}: ``{"name": ...}``, ``{"maintenance": true}``, or both."""
    if not body:
        raise Unprocessable("give a new name, or maintenance: true or false")
    maintenance = body.get("maintenance")
    if maintenance is not None and not isinstance(maintenance, bool):
        raise Unprocessable("maintenance must be true or false")
    name = validate_app_name(body["name"]) if "name" in body else None
    if name is None and maintenance is None:
        raise Unprocessable("give a new name, or maintenance: true or false")
    return AppUpdate(name=name, maintenance=maintenance)


#: A one-off command's length: a shell line, not a script (send a file with the code).
MAX_COMMAND = 10_000


@dataclass(frozen=True, slots=True)
class RunRequest:
    command: str
    #: Stream the output and exit code back (``slipway run``), or answer at once (--detach).
    attach: bool


def run(body: Body) -> RunRequest:
    """POST /apps/{app}/dynos: ``{"command": "python manage.py shell", "attach": true}``."""
    command = body.get("command")
    if not isinstance(command, str) or not command.strip() or len(command) > MAX_COMMAND:
        raise Unprocessable(
            f"command must be a non-empty shell line of at most {MAX_COMMAND} characters",
            id="invalid_command",
        )
    attach = body.get("attach", True)
    if not isinstance(attach, bool):
        raise Unprocessable("attach must be true or false")
    return RunRequest(command=command, attach=attach)


def config_changes(body: Body) -> dict[str, str | None]:
    """PATCH /apps/{app}/config-vars: NAME -> value, or null to unset NAME."""
    return validate_config_changes(body)


def release(body: Body) -> Deploy | Rollback:
    """POST /apps/{app}/releases: a rollback (``release``) or a deploy."""
    if "release" in body:
        return Rollback(version=validate_version(body["release"]))
    return Deploy(
        artifact=validate_artifact(body.get("artifact")),
        procfile=validate_procfile(body.get("procfile")),
        description=validate_description(body.get("description")),
    )


def formation_batch(body: Body) -> list[FormationChange]:
    """PATCH /apps/{app}/formation: ``{"updates": [{type, quantity, ...}, ...]}``."""
    updates = body.get("updates")
    if not isinstance(updates, list) or not updates:
        raise Unprocessable("updates must be a non-empty list of {type, quantity, ...}")
    changes = []
    for update in updates:
        if not isinstance(update, dict) or not isinstance(update.get("type"), str):
            raise Unprocessable("each update needs a process type: {type, quantity}")
        changes.append(formation_change(update["type"], update))
    return changes


def formation_one(process: str, body: Body) -> FormationChange:
    """PATCH /apps/{app}/formation/{type}: the type is the path's."""
    return formation_change(process, body)


def hostname(body: Body) -> str:
    """POST /apps/{app}/domains: ``{"hostname": ...}``, lower-cased."""
    return validate_hostname(body.get("hostname"))


def addon(body: Body) -> AddonCreate:
    """POST /apps/{app}/addons: ``{"plan": ..., "attachment": {"name": ...}}``."""
    plan = body.get("plan")
    if not isinstance(plan, str) or not plan:
        raise Unprocessable("plan must be a string like 'postgres' or 'postgres:mini'")
    attachment = body.get("attachment")
    name = attachment.get("name") if isinstance(attachment, dict) else None
    return AddonCreate(plan=plan, attachment=None if name is None else validate_attachment(name))


def addon_plan(body: Body) -> str:
    """PATCH /apps/{app}/addons/{addon}: ``{"plan": ...}``, the plan to move to."""
    plan = body.get("plan")
    if not isinstance(plan, str) or not plan:
        raise Unprocessable("plan must be a string like 'basic' or 'postgres:basic'")
    return plan


def token(body: Body) -> TokenCreate:
    """POST /tokens: an admin token, or one for ``app``."""
    admin = body.get("admin", False)
    app = body.get("app")
    if not isinstance(admin, bool) or (app is not None and not isinstance(app, str)):
        raise BadRequest("admin must be true/false and app a name", id="bad_request")
    name = validate_token_name(body.get("name"))
    if admin == (app is not None):
        raise Unprocessable("a token is either admin or for one app, not both or neither")
    return TokenCreate(name=name, app=app)
