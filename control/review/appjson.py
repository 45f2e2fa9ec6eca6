"""The repository's app.json, as Heroku defines it, reduced to what a review app needs.

For a review app, ``environments.review`` overrides the top level: its
``env`` is merged over the top-level ``env``, its ``addons`` replace the
top-level list, its ``scripts.postdeploy`` replaces the top-level one.
``scripts.pr-predestroy`` runs before a review app is destroyed.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control.addons.names import SERVICES, attachment
from control.review.errors import AppJsonError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ALIAS = re.compile(r"^[A-Z][A-Z0-9_]*$")


class AddonKind(enum.StrEnum):
    POSTGRES = "postgres"
    REDIS = "redis"
    SEARCH = "search"


#: Add-on service names people write in app.json (Heroku's and ours) -> what slipway provides.
_SERVICES = {name: AddonKind(service) for name, service in SERVICES.items()}


@dataclass(frozen=True, slots=True)
class Addon:
    kind: AddonKind
    plan: str | None
    alias: str | None
    """``as``: the attachment name, which sets the config var (``<ALIAS>_URL``)."""


@dataclass(frozen=True, slots=True)
class Generated:
    """A config var app.json asks to generate (``"generator": "secret"``)."""

    generator: str


@dataclass(frozen=True, slots=True)
class ReviewConfig:
    env: Mapping[str, str | Generated]
    addons: tuple[Addon, ...]
    postdeploy: str | None
    predestroy: str | None


EMPTY = ReviewConfig(env={}, addons=(), postdeploy=None, predestroy=None)


def parse_app_json(text: str) -> ReviewConfig:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AppJsonError(f"app.json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise AppJsonError("app.json must hold a JSON object")
    review = _object(_object(data, "environments", "app.json"), "review", "environments")
    env = _env(data.get("env", {}), "env")
    env.update(_env(review.get("env", {}), "environments.review.env"))
    if "addons" in review:
        addons = _addons(review["addons"], "environments.review.addons")
    else:
        addons = _addons(data.get("addons", []), "addons")
    scripts = _object(data, "scripts", "app.json")
    review_scripts = _object(review, "scripts", "environments.review")
    postdeploy = _script(review_scripts, "postdeploy", "environments.review.scripts")
    if postdeploy is None:
        postdeploy = _script(scripts, "postdeploy", "scripts")
    return ReviewConfig(
        env=env,
        addons=addons,
        postdeploy=postdeploy,
        predestroy=_script(scripts, "pr-predestroy", "scripts"),
    )


def _object(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise AppJsonError(f"{where}.{key} must be an object")
    return value


def _script(scripts: dict[str, Any], key: str, where: str) -> str | None:
    value = scripts.get(key)
    if value is None:
        return None
    # Heroku also accepts {"command": ..., "size": ...} for postdeploy.
    if isinstance(value, dict):
        value = value.get("command")
    if not isinstance(value, str) or not value.strip():
        raise AppJsonError(f"{where}.{key} must be a non-empty command")
    return value


def _env(raw: Any, where: str) -> dict[str, str | Generated]:
    if not isinstance(raw, dict):
        raise AppJsonError(f"{where} must be an object of NAME: value")
    env: dict[str, str | Generated] = {}
    for name, spec in raw.items():
        if not _ENV_NAME.match(name):
            raise AppJsonError(f"{where}: {name!r} is not a valid config var name")
        if isinstance(spec, str):
            env[name] = spec
            continue
        if not isinstance(spec, dict):
            raise AppJsonError(f"{where}.{name} must be a string or an object")
        if spec.get("generator") is not None:
            if spec["generator"] != "secret":
                raise AppJsonError(f"{where}.{name}: only the 'secret' generator exists")
            env[name] = Generated("secret")
        elif isinstance(spec.get("value"), str):
            env[name] = spec["value"]
        elif "value" in spec:
            raise AppJsonError(f"{where}.{name}.value must be a string")
        elif spec.get("required", True):
            raise AppJsonError(
                f"{where}.{name} is required but has no value; a review app has nobody to "
                "ask, so give it a value or a generator in environments.review.env"
            )
    return env


def _addons(raw: Any, where: str) -> tuple[Addon, ...]:
    if not isinstance(raw, list):
        raise AppJsonError(f"{where} must be a list")
    addons: list[Addon] = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        alias: str | None = None
        if isinstance(item, str):
            plan_ref = item
        elif isinstance(item, dict) and isinstance(item.get("plan"), str):
            plan_ref = item["plan"]
            alias = item.get("as")
            if alias is not None and (not isinstance(alias, str) or not _ALIAS.match(alias)):
                raise AppJsonError(f"{at}.as must be an UPPER_CASE attachment name")
        else:
            raise AppJsonError(f"{at} must be a plan name or an object with a 'plan'")
        service, _, plan = plan_ref.partition(":")
        kind = _SERVICES.get(service)
        if kind is None:
            raise AppJsonError(
                f"{at}: add-on {service!r} is not provided here (use postgres, redis or search)"
            )
        # Bonsai's and SearchBox's names imply their config var, as they do on Heroku.
        alias = alias or attachment(service)
        addons.append(Addon(kind=kind, plan=plan or None, alias=alias))
    return tuple(addons)
