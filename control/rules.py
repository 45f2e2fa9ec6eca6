"""The control plane's rules, as pure functions: names, config vars, Procfiles, formation.

No I/O and no clock: the service calls these with what it read and ``now``,
and they return the new value or raise ``Unprocessable`` with a message that
says what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, fields
from typing import Any

from agent.autoscale import parse_autoscale
from agent.dynosize import SIZES, check_size
from agent.errors import ConfigError
from agent.queues import parse_source
from control.errors import Conflict, Forbidden, Unprocessable
from control.models import Formation
from control.requests import FormationChange
from kit.durations import parse_duration

# Every name is checked with ``fullmatch``: ``re.match`` with ``$`` takes "shop\n".
APP_NAME = re.compile(r"[a-z][a-z0-9-]{1,29}")
CONFIG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
PROCESS_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,29}")
ATTACHMENT = re.compile(r"[A-Z][A-Z0-9_]{0,49}")
#: One app's processes past this are a typo, not a plan (a local machine runs them all);
#: the API's hard range for quantity and min/max_scale, whatever token asks.
MAX_QUANTITY = 100
#: All of an app's config vars together (Heroku's limit): env is not a data store.
MAX_CONFIG_BYTES = 32 * 1024
#: The platform's default: sleep after 5 idle minutes.
DEFAULT_IDLE_AFTER = 300.0
#: 30 days: an app that should not sleep says so with never_sleep, not a huge idle_after.
MAX_IDLE_AFTER = 30 * 24 * 3600
DEFAULT_MAX_SCALE = 10
#: Column sizes of the state store (control/store/schema.py): longer values are refused
#: here with a 422, not by PostgreSQL as a store failure.
MAX_DESCRIPTION = 500
MAX_ARTIFACT = 1000
#: The audit log's actor column (200) holds ``token:NAME``.
MAX_TOKEN_NAME = 100
DEFAULT_ATTACHMENT = {"postgres": "DATABASE", "redis": "REDIS", "search": "ELASTICSEARCH"}


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
    if not isinstance(name, str) or not APP_NAME.fullmatch(name):
        raise Unprocessable(
            f"app name {name!r} is invalid: 2-30 characters, lowercase letters, digits and "
            "dashes, starting with a letter",
            id="invalid_name",
        )
    return name


_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
#: Special-use top-level names (RFC 6761, RFC 6762, ICANN's .internal): they resolve to
#: this machine or a private network, never to a public site an app could own.
SPECIAL_USE = frozenset({"localhost", "local", "internal", "invalid", "test", "example"})


def validate_hostname(hostname: object) -> str:
    """A DNS name of two labels or more, lower-cased (``pr-7.example.com``), never an IP."""
    if isinstance(hostname, str):
        lowered = hostname.lower().removesuffix(".")
        labels = lowered.split(".")
        if (
            len(lowered) <= 253
            and len(labels) >= 2
            and all(_LABEL.fullmatch(x) for x in labels)
            # Every top-level domain starts with a letter (xn-- included); a name whose last
            # label does not is an address to some resolver: 127.0.0.1, 10.1, 0x7f.1.
            and labels[-1][0].isalpha()
        ):
            return lowered
    raise Unprocessable(
        f"hostname {hostname!r} is invalid: a DNS name like www.example.com, not an IP address",
        id="invalid_hostname",
    )


def check_custom_domain(
    hostname: str, *, app: str, app_domain: str | None, reserved: Sequence[str], tenant: bool
) -> None:
    """Whether ``app`` may add ``hostname`` (already validated) as a custom domain.

    Names under the platform's app domain belong to the apps they name: no app
    takes ``B.{app_domain}``, and an app token adds only names under its own
    ``APP.{app_domain}``. Names under ``reserved`` domains (review apps'
    ``pr-N.{domain}``) and special-use names (``x.localhost``) are the platform's
    to give: an admin may, an app token may not. Uniqueness across apps is the
    store's (one row per host name).
    """
    if app_domain:
        own = f"{app}.{app_domain}"
        if hostname == own:
            raise Conflict(f"{hostname} is already the default domain of {app}", id="domain_taken")
        if hostname.endswith("." + app_domain):
            owner = hostname.removesuffix("." + app_domain).rsplit(".", 1)[-1]
            if owner != app and (tenant or "." not in hostname.removesuffix("." + app_domain)):
                raise Conflict(
                    f"{hostname} is under {owner}.{app_domain}, the default domain of the app "
                    f"{owner}; an app may add names under its own {own} only",
                    id="domain_taken",
                )
            return
    if not tenant:
        return
    for domain in reserved:
        if hostname == domain or hostname.endswith("." + domain):
            raise Forbidden(
                f"{hostname} is under {domain}, whose names the platform gives out "
                "(to apps and review apps); ask an operator",
                id="domain_reserved",
            )
    if hostname.rsplit(".", 1)[-1] in SPECIAL_USE:
        raise Forbidden(
            f"{hostname} is a special-use name (.{hostname.rsplit('.', 1)[-1]}), not a public "
            "domain an app can own; add a domain you control, like www.example.com",
            id="domain_reserved",
        )


def validate_attachment(attachment: object) -> str:
    """An add-on's attachment name: ``DATABASE`` sets ``DATABASE_URL``."""
    if not isinstance(attachment, str) or not ATTACHMENT.fullmatch(attachment):
        raise Unprocessable(
            f"attachment name {attachment!r} is invalid: uppercase letters, digits, _",
            id="invalid_attachment",
        )
    return attachment


def validate_artifact(artifact: object) -> str:
    if not isinstance(artifact, str) or not 0 < len(artifact) <= MAX_ARTIFACT:
        raise Unprocessable(
            f"artifact must be a string of 1-{MAX_ARTIFACT} characters (a directory or an image)"
        )
    return artifact


def validate_description(description: object) -> str | None:
    """A release's own description, or None for the one the release makes."""
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION
    ):
        raise Unprocessable(f"description must be a string of at most {MAX_DESCRIPTION} characters")
    return description


def validate_version(version: object) -> int:
    """A release version to roll back to: 3 (v3), an integer from 1."""
    number = as_int(version)
    if number is None or number < 1:
        raise Unprocessable("release must be a release version number (v3 is 3)")
    return number


def validate_token_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_TOKEN_NAME:
        raise Unprocessable(f"a token needs a name of 1-{MAX_TOKEN_NAME} characters")
    return name


def validate_procfile(procfile: object) -> dict[str, str]:
    if not isinstance(procfile, dict) or not procfile:
        raise Unprocessable("procfile must be a non-empty object of type -> command")
    for name, command in procfile.items():
        if not isinstance(name, str) or not PROCESS_TYPE.fullmatch(name):
            raise Unprocessable(f"process type {name!r} is invalid: lowercase, up to 30 chars")
        if not isinstance(command, str) or not command.strip():
            raise Unprocessable(f"the command of process type {name!r} must be a non-empty string")
    return dict(procfile)


def idle_seconds(value: object) -> float:
    """``idle_after`` as seconds: a number, or a duration such as ``"15s"``, ``"5m"``, ``"1h"``."""
    return idle_in_range(idle_duration(value) if isinstance(value, str) else value)


def idle_duration(text: str) -> float:
    """A duration string as seconds, its range not checked; a syntax error is a 422."""
    try:
        return parse_duration(text)
    except ValueError:
        raise Unprocessable(
            f"idle_after {text[:40]!r} is not a duration: use seconds (300) or a "
            "number with a unit (15s, 5m, 1h)",
            id="invalid_duration",
        ) from None


def idle_in_range(value: object) -> float:
    """``idle_after`` checked: seconds from 1 to ``MAX_IDLE_AFTER``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 1 <= value <= MAX_IDLE_AFTER  # NaN fails this too
    ):
        raise Unprocessable(
            f"idle_after must be a number of seconds from 1 to {MAX_IDLE_AFTER}, or a duration"
            " like 15s, 5m, 1h (to never sleep, set never_sleep)"
        )
    return float(value)


def formation_change(process: str, update: Mapping[str, Any]) -> FormationChange:
    """One update of ``process`` (a JSON object), checked field by field."""
    known = {f.name for f in fields(FormationChange)}
    unknown = sorted(set(update) - known)
    if unknown:
        raise Unprocessable(f"unknown formation fields: {', '.join(unknown)}")
    counts: dict[str, int] = {}
    for key in ("quantity", "min_scale", "max_scale"):
        if key in update:
            value = as_int(update[key])
            if value is None or not 0 <= value <= MAX_QUANTITY:
                raise Unprocessable(f"{key} must be an integer from 0 to {MAX_QUANTITY}")
            counts[key] = value
    idle_after: float | None = None
    if "idle_after" in update:
        # A string's range is checked with the whole formation (after the app is found), as
        # the document cannot bound a duration string: a ghost app stays a 404.
        raw = update["idle_after"]
        idle_after = idle_duration(raw) if isinstance(raw, str) else idle_in_range(raw)
    never_sleep: bool | None = None
    if "never_sleep" in update:
        if not isinstance(update["never_sleep"], bool):
            raise Unprocessable("never_sleep must be true or false")
        never_sleep = update["never_sleep"]
    size: str | None = None
    if "size" in update:
        # Only its type here: what it names is checked with the whole formation (after the
        # app is found), so a size for an app that does not exist is a 404 like any change.
        size = update["size"]
        if not isinstance(size, str):
            raise Unprocessable(
                f"size must be a string: one of {', '.join(SIZES)}, or an amount like '768MB'"
            )
    autoscale = autoscale_setting(process, update["autoscale"]) if "autoscale" in update else None
    queue = queue_setting(process, update["queue"]) if "queue" in update else None
    return FormationChange(
        type=process,
        idle_after=idle_after,
        never_sleep=never_sleep,
        size=size,
        autoscale=autoscale,
        queue=queue,
        **counts,
    )


def queue_setting(process: str, value: object) -> dict[str, Any]:
    """A formation's ``queue`` as sent, by the agent's own rules (``parse_source``), in its
    wire form with the defaults filled in; null removes it (``{}``)."""
    if value is None:
        return {}
    if process == "web":
        raise Unprocessable(
            "queue applies to worker types: web is woken by its requests, not by a queue"
        )
    if isinstance(value, dict):
        # JSON Schema's integer takes 17.0 as well as 17: whole numbers as ints for the agent.
        value = {k: as_int(v) if as_int(v) is not None else v for k, v in value.items()}
    try:
        return parse_source(value, f"queue of {process!r}").wire()
    except ConfigError as exc:
        raise Unprocessable(str(exc), id="invalid_queue") from exc


def autoscale_setting(process: str, value: object) -> dict[str, float]:
    """A formation's ``autoscale`` as sent: null turns it off (``{}``), an object of numbers
    sets it; ``apply_formation_change`` checks the whole against the process type."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Unprocessable("autoscale must be an object with a target, or null to turn it off")
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value.values()):
        raise Unprocessable("autoscale's values must be numbers (seconds for windows and delay)")
    return {str(k): float(v) for k, v in value.items()}


def checked_autoscale(process: str, value: Mapping[str, float]) -> dict[str, float]:
    """``value`` by the agent's own rules, completed with its defaults (pure)."""
    if process != "web":
        raise Unprocessable(
            f"autoscale applies to web only (requests in flight); {process!r} cannot have it"
        )
    try:
        found = parse_autoscale({process: dict(value)}, {process}, "formation")
    except ConfigError as exc:
        raise Unprocessable(str(exc)) from exc
    return asdict(found[process])


def apply_formation_change(current: Formation, change: FormationChange, now: float) -> Formation:
    """The formation after one checked change (pure), checked as a whole."""
    values: dict[str, Any] = {
        "quantity": current.quantity,
        "idle_after": current.idle_after,
        "min_scale": current.min_scale,
        "max_scale": current.max_scale,
        "never_sleep": current.never_sleep,
        "size": current.size,
        "autoscale": current.autoscale,
        "queue": current.queue,
    }
    values.update((k, v) for k, v in change.given().items() if k != "type")
    values["idle_after"] = idle_in_range(values["idle_after"])
    try:
        values["size"] = check_size(values["size"], f"process type {current.type!r}")
    except ConfigError as exc:
        raise Unprocessable(str(exc), id="invalid_size") from exc
    autoscale = values["autoscale"]
    values["autoscale"] = checked_autoscale(current.type, autoscale) if autoscale else None
    values["queue"] = dict(values["queue"]) if values["queue"] else None
    if values["min_scale"] > values["max_scale"]:
        raise Unprocessable("min_scale must not exceed max_scale")
    if values["quantity"] > values["max_scale"]:
        raise Unprocessable(
            f"quantity {values['quantity']} exceeds max_scale {values['max_scale']}"
        )
    return Formation(type=current.type, updated_at=now, **values)


def apply_formation_update(current: Formation, update: Mapping[str, Any], now: float) -> Formation:
    """The formation after one update given as a JSON object (pure)."""
    return apply_formation_change(current, formation_change(current.type, update), now)


def check_process_ceiling(
    app: str,
    before: Iterable[Formation],
    after: Iterable[Formation],
    *,
    ceiling: int,
    variable: str,
) -> None:
    """Refuse a formation change that takes ``app`` past ``ceiling`` processes.

    An app runs, per process type, its quantity or min_scale (whichever is
    higher); max_scale may not name more than the ceiling either. Only a
    change upward is refused: after an operator lowers the ceiling, an app
    above it may still scale down.
    """
    old = {f.type: f for f in before}
    new = list(after)

    def total(items: Iterable[Formation]) -> int:
        return sum(max(f.quantity, f.min_scale) for f in items)

    hint = f"an operator raises it with {variable}"
    running = total(new)
    if running > ceiling and running > total(old.values()):
        raise Unprocessable(
            f"{app} would run {running} processes; at most {ceiling} per app ({hint})",
            id="process_ceiling",
        )
    for item in new:
        was = old.get(item.type)
        if item.max_scale > ceiling and (was is None or item.max_scale > was.max_scale):
            raise Unprocessable(
                f"max_scale {item.max_scale} of {item.type} is above {ceiling}, the most "
                f"processes per app ({hint})",
                id="process_ceiling",
            )


def validate_config_changes(changes: object) -> dict[str, str | None]:
    """A PATCH body of config vars: NAME -> value, or null to unset NAME."""
    if not isinstance(changes, dict) or not changes:
        raise Unprocessable("send an object of NAME -> value, or null to unset NAME")
    for key, value in changes.items():
        if not CONFIG_KEY.fullmatch(key):
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
