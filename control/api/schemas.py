"""JSON Schemas of the API's bodies, for the OpenAPI document (data, no logic).

Request schemas state the rules ``control/api/parse.py`` applies, with the
patterns and bounds of ``control/rules.py`` (one statement of each), so a
client (or schemathesis) generating from the document produces requests the
server accepts, and the rest are refused with a 4xx and a clear message.
"""

from __future__ import annotations

import re
from typing import Any

from agent.autoscale import MAX_PANIC_THRESHOLD, MAX_TARGET, MAX_WINDOW
from agent.queues import MAX_PER_WORKER, MAX_QUEUE_SCALE
from agent.queues import Kind as QueueKind
from control import rules

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def array_of(name: str) -> Schema:
    return {"type": "array", "items": ref(name)}


TIME: Schema = {"type": "string", "format": "date-time"}


def whole(pattern: re.Pattern[str]) -> str:
    """A rule's pattern (checked with ``fullmatch``) as JSON Schema states it, anchored."""
    return f"^{pattern.pattern}$"


APP_NAME: Schema = {"type": "string", "pattern": whole(rules.APP_NAME)}
PROCESS_TYPE: Schema = {"type": "string", "pattern": whole(rules.PROCESS_TYPE)}
CONFIG_KEY_PATTERN = whole(rules.CONFIG_KEY)
_COUNT: Schema = {"type": "integer", "minimum": 0, "maximum": rules.MAX_QUANTITY}

#: Sources that need something besides a kind: a list's keys, a postgres query.
_NAMED_KINDS = (QueueKind.LIST, QueueKind.POSTGRES)


def _queue_source(kinds: list[str], *, names_required: bool = False, query: bool = False) -> Schema:
    """One shape of a formation's ``queue``, as ``agent.queues.parse_source`` checks it."""
    names: Schema = {"type": "array", "items": {"type": "string", "minLength": 1}}
    return {
        "type": "object",
        "required": ["kind", *(["names"] if names_required else []), *(["query"] if query else [])],
        "properties": {
            "kind": {"type": "string", "enum": kinds},
            "names": {**names, "minItems": 1} if names_required else names,
            "url_var": {"type": "string", "minLength": 1},
            "query": {"type": "string", "pattern": r"\S"} if query else {"type": "null"},
            "per_worker": {"type": "integer", "minimum": 0, "maximum": MAX_PER_WORKER},
            "max_scale": {"type": "integer", "minimum": 1, "maximum": MAX_QUEUE_SCALE},
        },
        "additionalProperties": False,
    }


FORMATION_FIELDS: Schema = {
    "quantity": _COUNT,
    "idle_after": {"type": "number", "minimum": 1, "maximum": rules.MAX_IDLE_AFTER},
    "min_scale": _COUNT,
    "max_scale": _COUNT,
    "never_sleep": {"type": "boolean"},
    "size": {
        "type": "string",
        "maxLength": 40,
        "description": "Memory and CPU of each process: eco, basic, standard-1x (default), "
        "standard-2x, performance-m, performance-l, or an amount like 768MB or 1.5GB,2cpu.",
    },
    # Worker types only; null removes it (a usual Procfile worker line is still detected).
    "queue": {
        "description": "Where the type's jobs wait, so they wake it while the app sleeps "
        "(agent/queues.py): a queue library's keys in Redis, or a Postgres query.",
        "oneOf": [
            {"type": "null"},
            _queue_source([k.value for k in QueueKind if k not in _NAMED_KINDS]),
            _queue_source(["list"], names_required=True),
            _queue_source(["postgres"], query=True),
        ],
    },
    # Web only; null turns it off. Bounds are min_scale and max_scale.
    "autoscale": {
        "type": ["object", "null"],
        "required": ["target"],
        "properties": {
            "target": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TARGET},
            "stable_window": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WINDOW},
            "panic_window": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WINDOW},
            "panic_threshold": {"type": "number", "minimum": 1, "maximum": MAX_PANIC_THRESHOLD},
            "scale_down_delay": {"type": "number", "minimum": 0, "maximum": MAX_WINDOW},
        },
        "additionalProperties": False,
    },
}

#: What a request may send: seconds, or a duration string as the CLI's flags take it.
FORMATION_CHANGES: Schema = {
    **FORMATION_FIELDS,
    "idle_after": {
        "oneOf": [
            FORMATION_FIELDS["idle_after"],
            {
                "type": "string",
                "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$",
                "description": "A duration: 300, 15s, 5m, 1h (from 1 s to 30 days).",
            },
        ]
    },
}

APP_CREATE: Schema = {
    "type": "object",
    "description": "Without a name, one is made up: adjective-noun-1234.",
    "properties": {"name": APP_NAME},
    "additionalProperties": False,
}
APP_UPDATE: Schema = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        "name": APP_NAME,
        "maintenance": {
            "type": "boolean",
            "description": "While true the router answers every request with H80 (503).",
        },
    },
    "additionalProperties": False,
}
CONFIG_PATCH: Schema = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"pattern": CONFIG_KEY_PATTERN},
    "additionalProperties": {"type": ["string", "null"]},
}
RELEASE_CREATE: Schema = {
    "oneOf": [
        {
            "type": "object",
            "description": "Deploy: a new release running this artifact and Procfile.",
            "required": ["artifact", "procfile"],
            "properties": {
                "artifact": {"type": "string", "minLength": 1, "maxLength": rules.MAX_ARTIFACT},
                "procfile": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"pattern": whole(rules.PROCESS_TYPE)},
                    "additionalProperties": {"type": "string", "pattern": "\\S"},
                },
                "description": {"type": "string", "maxLength": rules.MAX_DESCRIPTION},
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "description": "Rollback: a new release from an old one's artifact and config.",
            "required": ["release"],
            "properties": {"release": {"type": "integer", "minimum": 1, "maximum": 2**53}},
            "additionalProperties": False,
        },
    ]
}
_TARBALL = "\\.(tar|tgz|tar\\.gz)$"
BUILD_CREATE: Schema = {
    "type": "object",
    "description": (
        "Build a source and release it. A tarball may instead be sent as the body, with"
        " Content-Type application/gzip (what `slipway builds:create DIR` does)."
    ),
    "required": ["source_blob"],
    "properties": {
        "source_blob": {
            "oneOf": [
                {
                    "type": "object",
                    "description": "A git URL (or repository path) and the commit sha to build.",
                    "required": ["url", "version"],
                    "properties": {
                        "url": {"type": "string", "minLength": 1, "not": {"pattern": _TARBALL}},
                        "version": {"type": "string", "pattern": "^[0-9a-f]{7,64}$"},
                    },
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "description": "A tarball's absolute path on the control plane's machine.",
                    "required": ["url"],
                    "properties": {
                        "url": {"type": "string", "pattern": _TARBALL},
                        "version": {"type": ["string", "null"]},
                    },
                    "additionalProperties": False,
                },
            ]
        }
    },
    "additionalProperties": False,
}
FORMATION_UPDATE: Schema = {
    "type": "object",
    "properties": FORMATION_CHANGES,
    "additionalProperties": False,
}
FORMATION_BATCH: Schema = {
    "type": "object",
    "required": ["updates"],
    "properties": {
        "updates": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": PROCESS_TYPE, **FORMATION_CHANGES},
                "additionalProperties": False,
            },
        }
    },
    "additionalProperties": False,
}
DYNO_CREATE: Schema = {
    "type": "object",
    "required": ["command"],
    "properties": {
        "command": {"type": "string", "minLength": 1, "maxLength": 10_000, "pattern": "\\S"},
        "attach": {"type": "boolean", "description": "Stream output back (default true)."},
    },
    "additionalProperties": False,
}
RUN_EVENT: Schema = {
    "type": "object",
    "description": "One line of the NDJSON stream: the dyno's name, output, an error, or the "
    "exit code (last). Blank lines are keep-alives.",
    "properties": {
        "dyno": {"type": "string"},
        "output": {"type": "string"},
        "error": {"type": "string"},
        "exit_code": {"type": "integer"},
    },
}
RUN_STARTED: Schema = {
    "type": "object",
    "required": ["name", "command", "attach", "state"],
    "properties": {
        "name": {"type": "string", "description": "run.NNNN: its lines' dyno in the logs"},
        "command": {"type": "string"},
        "attach": {"const": False},
        "state": {"const": "starting"},
    },
}
DOMAIN_CREATE: Schema = {
    "type": "object",
    "required": ["hostname"],
    "properties": {
        "hostname": {
            "type": "string",
            "maxLength": 253,
            "description": "Not an IP address: the last label starts with a letter.",
            "pattern": r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
            r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$",
        }
    },
    "additionalProperties": False,
}
ADDON_CREATE: Schema = {
    "type": "object",
    "required": ["plan"],
    "properties": {
        "plan": {
            "type": "string",
            "minLength": 1,
            "description": "'postgres', 'postgres:mini', 'redis', ...",
        },
        "attachment": {
            "type": "object",
            "properties": {"name": {"type": "string", "pattern": whole(rules.ATTACHMENT)}},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

ADDON_UPDATE: Schema = {
    "type": "object",
    "required": ["plan"],
    "properties": {
        "plan": {
            "type": "string",
            "minLength": 1,
            "description": "The plan to move to, in place: 'postgres:basic', or 'basic' "
            "(a plan of the add-on's own service)",
        },
    },
    "additionalProperties": False,
}


def with_plans(plans: list[str]) -> Schema:
    """ADDON_CREATE with ``plan`` narrowed to what this server offers."""
    properties = {**ADDON_CREATE["properties"], "plan": {"type": "string", "enum": plans}}
    return {**ADDON_CREATE, "properties": properties}


TOKEN_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": rules.MAX_TOKEN_NAME}
TOKEN_CREATE: Schema = {
    "oneOf": [
        {
            "type": "object",
            "description": "An admin token: everything.",
            "required": ["name", "admin"],
            "properties": {"name": TOKEN_NAME, "admin": {"const": True}},
            "additionalProperties": False,
        },
        {
            "type": "object",
            "description": "A token for one app.",
            "required": ["name", "app"],
            "properties": {"name": TOKEN_NAME, "app": APP_NAME, "admin": {"const": False}},
            "additionalProperties": False,
        },
    ]
}
VERIFY: Schema = {
    "type": "object",
    "required": ["token"],
    "properties": {"token": ref("Token"), "app": {"type": ["string", "null"]}},
}


def unknown_fields(schema: Schema, data: Any, where: str = "") -> list[str]:
    """Fields of ``data`` a closed object schema (``additionalProperties: false``) does not name.

    The service checks each field's value; this catches what it would
    silently ignore, such as a misspelt ``quantitiy``. A ``oneOf`` passes if
    any branch does.
    """
    if "oneOf" in schema:
        found = [unknown_fields(branch, data, where) for branch in schema["oneOf"]]
        return min(found, key=len)
    if isinstance(data, dict) and schema.get("type") == "object":
        properties = schema.get("properties", {})
        unknown = []
        if schema.get("additionalProperties") is False:
            unknown = [f"{where}{key}" for key in data if key not in properties]
        for key, sub in properties.items():
            if key in data:
                unknown += unknown_fields(sub, data[key], f"{where}{key}.")
        return unknown
    if isinstance(data, list) and isinstance(schema.get("items"), dict):
        unknown = []
        for index, item in enumerate(data):
            unknown += unknown_fields(schema["items"], item, f"{where}{index}.")
        return unknown
    return []
