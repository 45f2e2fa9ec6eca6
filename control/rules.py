"""The control plane's rules, as pure functions: names, config vars, Procfiles, formation.

No I/O and no clock: the service calls these with what it read and ``now``,
and they return the new value or raise ``Unprocessable`` with a message that
says what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from control.errors import Unprocessable
from control.models import Formation

APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,29}$")
CONFIG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
PROCESS_TYPE = re.compile(r"^[a-z][a-z0-9_-]{0,29}$")
ATTACHMENT = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
#: One app's processes past this are a typo, not a plan (a local machine runs them all).
MAX_QUANTITY = 100
#: All of an app's config vars together (Heroku's limit): env is not a data store.
MAX_CONFIG_BYTES = 32 * 1024
#: The platform's default: sleep after 5 idle minutes.
DEFAULT_IDLE_AFTER = 300.0
DEFAULT_MAX_SCALE = 10
DEFAULT_ATTACHMENT = {"postgres": "DATABASE", "redis": "REDIS"}


def default_formation(process: str, *, now: float) -> Formation:
    # Heroku's habit: web runs one dyno, every other type starts at zero.
    return Formation(
        type=process,
        quantity=1 if process == "web" else 0,
        idle_after=DEFAULT_IDLE_AFTER,
        min_scale=0,
        max_scale=DEFAULT_MAX_SCALE,
        never_sleep=False,
        updated_at=now,
    )


def as_int(value: object) -> int | None:
    """An integer sent as JSON: 2 or 2.0 (JSON Schema's integer), never true/false."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def validate_app_name(name: object) -> str:
    if not isinstance(name, str) or not APP_NAME.match(name):
        raise Unprocessable(
            f"app name {name!r} is invalid: 2-30 characters, lowercase letters, digits and "
            "dashes, starting with a letter",
            id="invalid_name",
        )
    return name


_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def validate_hostname(hostname: object) -> str:
    """A DNS name of two labels or more, lower-cased (``pr-7.example.com``)."""
    if isinstance(hostname, str):
        lowered = hostname.lower().rstrip(".")
        labels = lowered.split(".")
        if len(lowered) <= 253 and len(labels) >= 2 and all(_LABEL.match(x) for x in labels):
            return lowered
    raise Unprocessable(
        f"hostname {hostname!r} is invalid: a DNS name like www.example.com",
        id="invalid_hostname",
    )


def validate_procfile(procfile: object) -> dict[str, str]:
    if not isinstance(procfile, dict) or not procfile:
        raise Unprocessable("procfile must be a non-empty object of type -> command")
    for name, command in procfile.items():
        if not PROCESS_TYPE.match(name):
            raise Unprocessable(f"process type {name!r} is invalid: lowercase, up to 30 chars")
        if not isinstance(command, str) or not command.strip():
            raise Unprocessable(f"the command of process type {name!r} must be a non-empty string")
    return dict(procfile)


def apply_formation_update(current: Formation, update: Mapping[str, Any], now: float) -> Formation:
    """The formation after one update (pure): checked field by field, then as a whole."""
    known = {"type", "quantity", "idle_after", "min_scale", "max_scale", "never_sleep"}
    unknown = sorted(set(update) - known)
    if unknown:
        raise Unprocessable(f"unknown formation fields: {', '.join(unknown)}")
    values: dict[str, Any] = {
        "quantity": current.quantity,
        "idle_after": current.idle_after,
        "min_scale": current.min_scale,
        "max_scale": current.max_scale,
        "never_sleep": current.never_sleep,
    }
    for key in ("quantity", "min_scale", "max_scale"):
        if key in update:
            value = as_int(update[key])
            if value is None or not 0 <= value <= MAX_QUANTITY:
                raise Unprocessable(f"{key} must be an integer from 0 to {MAX_QUANTITY}")
            values[key] = value
    if "idle_after" in update:
        value = update["idle_after"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
            raise Unprocessable("idle_after must be a number of seconds, at least 1")
        values["idle_after"] = float(value)
    if "never_sleep" in update:
        if not isinstance(update["never_sleep"], bool):
            raise Unprocessable("never_sleep must be true or false")
        values["never_sleep"] = update["never_sleep"]
    if values["min_scale"] > values["max_scale"]:
        raise Unprocessable("min_scale must not exceed max_scale")
    if values["quantity"] > values["max_scale"]:
        raise Unprocessable(
            f"quantity {values['quantity']} exceeds max_scale {values['max_scale']}"
        )
    return Formation(type=current.type, updated_at=now, **values)


def validate_config_changes(changes: object) -> dict[str, str | None]:
    """A PATCH body of config vars: NAME -> value, or null to unset NAME."""
    if not isinstance(changes, dict) or not changes:
        raise Unprocessable("send an object of NAME -> value, or null to unset NAME")
    for key, value in changes.items():
        if not CONFIG_KEY.match(key):
            raise Unprocessable(f"config var name {key!r} is invalid", id="invalid_config_var")
        if value is not None and not isinstance(value, str):
            raise Unprocessable(f"the value of {key} must be a string or null")
    return dict(changes)


def apply_config_changes(
    config: Mapping[str, str], changes: Mapping[str, str | None]
) -> dict[str, str]:
    """The config after a PATCH (null unsets), refused past MAX_CONFIG_BYTES."""
    result = dict(config)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    size = sum(len(k.encode()) + len(v.encode()) for k, v in result.items())
    if size > MAX_CONFIG_BYTES:
        raise Unprocessable(
            f"config vars would take {size} bytes; the limit is {MAX_CONFIG_BYTES}",
            id="config_too_large",
        )
    return result


COMMIT = re.compile(r"^[0-9a-f]{7,64}$")


def validate_source_blob(blob: object) -> tuple[str, str | None]:
    """``{url, version}`` -> (url, commit). A tarball (``.tar``, ``.tgz``, ``.tar.gz``) needs no
    version; a git URL or repository path needs the commit sha to build."""
    if not isinstance(blob, dict) or not isinstance(blob.get("url"), str) or not blob["url"]:
        raise Unprocessable(
            "source_blob must be {url, version}: a git URL and a commit sha, or a tarball path",
            id="invalid_source",
        )
    url: str = blob["url"]
    version = blob.get("version")
    if is_tarball(url):
        if version is not None and not isinstance(version, str):
            raise Unprocessable("source_blob.version must be a string", id="invalid_source")
        return url, version
    if not isinstance(version, str) or not COMMIT.match(version):
        raise Unprocessable(
            "source_blob.version must be the commit sha to build (7-64 hex digits)",
            id="invalid_source",
        )
    return url, version


def is_local_source(url: str) -> bool:
    """A path on the control plane's machine (or file://), not a remote git URL."""
    if url.startswith("file:"):
        return True
    if "://" in url:
        return False
    # git's scp-like syntax (git@github.com:org/app.git) is remote; a bare path is not.
    head = url.split("/", 1)[0]
    return ":" not in head


def is_tarball(url: str) -> bool:
    return url.endswith((".tar", ".tgz", ".tar.gz"))


def redact_url(url: str) -> str:
    """A source URL without the credentials it may carry (for the audit log and the API)."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if sep and "@" in host:
        return f"{scheme}://***@{host.rsplit('@', 1)[1]}{slash}{path}"
    return url
