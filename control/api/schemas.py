"""JSON Schemas of the API's bodies, for the OpenAPI document (data, no logic).

Request schemas state the same rules the service enforces, so a client (or
schemathesis) generating from the document produces requests the server
accepts, and the rest are refused with a 4xx and a clear message.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def array_of(name: str) -> Schema:
    return {"type": "array", "items": ref(name)}


TIME: Schema = {"type": "string", "format": "date-time"}
APP_NAME: Schema = {"type": "string", "pattern": "^[a-z][a-z0-9-]{1,29}$"}
PROCESS_TYPE: Schema = {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,29}$"}
CONFIG_KEY_PATTERN = "^[A-Za-z_][A-Za-z0-9_]{0,254}$"

FORMATION_FIELDS: Schema = {
    "quantity": {"type": "integer", "minimum": 0, "maximum": 100},
    "idle_after": {"type": "number", "minimum": 1},
    "min_scale": {"type": "integer", "minimum": 0, "maximum": 100},
    "max_scale": {"type": "integer", "minimum": 0, "maximum": 100},
    "never_sleep": {"type": "boolean"},
}

COMPONENTS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["id", "message"],
        "properties": {
            "id": {"type": "string"},
            "message": {"type": "string"},
            "release": {"type": "object", "properties": {"version": {"type": "integer"}}},
            "output": {"type": "string"},
        },
    },
    "App": {
        "type": "object",
        "required": ["id", "name", "current_release", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "integer"},
            "name": APP_NAME,
            "current_release": {"type": ["integer", "null"]},
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "Build": {
        "type": "object",
        "required": ["id", "app", "status", "source_blob", "release", "output_stream_url"],
        "properties": {
            "id": {"type": "string"},
            "app": {"type": "object", "properties": {"name": APP_NAME}},
            "status": {"enum": ["pending", "succeeded", "failed"]},
            "source_blob": {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "version": {"type": ["string", "null"]},
                },
            },
            "commit": {"type": ["string", "null"]},
            "artifact": {"type": ["string", "null"]},
            "digest": {"type": ["string", "null"]},
            "procfile": {"type": "object", "additionalProperties": {"type": "string"}},
            "release": {
                "type": ["object", "null"],
                "description": "The release the build made; its status is the release's.",
                "properties": {
                    "version": {"type": "integer"},
                    "status": {"type": ["string", "null"]},
                },
            },
            "output_stream_url": {
                "type": ["string", "null"],
                "description": "The logs service's SSE stream of the app's build lines.",
            },
            "output": {"type": "string", "description": "Why it failed, with the output's tail."},
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "ConfigVars": {
        "type": "object",
        "additionalProperties": {"type": "string"},
    },
    "Release": {
        "type": "object",
        "required": ["version", "status", "current", "description", "created_at", "user"],
        "properties": {
            "version": {"type": "integer", "minimum": 1},
            "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
            "current": {"type": "boolean"},
            "description": {"type": "string"},
            "artifact": {"type": ["string", "null"]},
            "procfile": {"type": "object", "additionalProperties": {"type": "string"}},
            "config_var_names": {"type": "array", "items": {"type": "string"}},
            "output": {"type": "string"},
            "user": {
                "type": "object",
                "required": ["actor"],
                "properties": {"actor": {"type": "string"}},
            },
            "created_at": TIME,
        },
    },
    "Formation": {
        "type": "object",
        "required": ["type", "quantity", "idle_after", "min_scale", "max_scale", "never_sleep"],
        "properties": {"type": PROCESS_TYPE, **FORMATION_FIELDS, "updated_at": TIME},
    },
    "Dyno": {
        "type": "object",
        "required": ["name", "type", "state", "release"],
        "properties": {
            "name": {"type": "string"},
            "type": {"type": "string"},
            "state": {"type": "string", "enum": ["asleep", "waking", "up", "crashed"]},
            "release": {"type": "object", "properties": {"version": {"type": "integer"}}},
            "reason": {"type": "string"},
        },
    },
    "Domain": {
        "type": "object",
        "required": ["hostname", "app", "kind"],
        "properties": {
            "hostname": {"type": "string"},
            "app": {"type": "object", "properties": {"name": APP_NAME}},
            "kind": {"enum": ["default", "custom"]},
            "created_at": TIME,
        },
    },
    "Addon": {
        "type": "object",
        "required": ["id", "name", "service", "plan", "attachment", "config_vars"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "app": {"type": "object", "properties": {"name": APP_NAME}},
            "service": {"type": "string"},
            "plan": {"type": "object", "properties": {"name": {"type": "string"}}},
            "attachment": {"type": "object", "properties": {"name": {"type": "string"}}},
            "config_vars": {"type": "array", "items": {"type": "string"}},
            "release": {
                "type": "object",
                "properties": {"version": {"type": "integer"}, "status": {"type": "string"}},
            },
            "created_at": TIME,
        },
    },
    "Token": {
        "type": "object",
        "required": ["id", "name", "admin"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "admin": {"type": "boolean"},
            "app": {"type": ["object", "null"], "properties": {"name": APP_NAME}},
            "token": {"type": "string", "description": "Shown once, at creation."},
            "created_at": TIME,
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "at", "actor", "action", "detail"],
        "properties": {
            "id": {"type": "integer"},
            "at": TIME,
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "app": {"type": ["string", "null"]},
            "detail": {"type": "object"},
        },
    },
}

APP_CREATE: Schema = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": APP_NAME},
    "additionalProperties": False,
}
APP_UPDATE = APP_CREATE
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
                "artifact": {"type": "string", "minLength": 1},
                "procfile": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"pattern": "^[a-z][a-z0-9_-]{0,29}$"},
                    "additionalProperties": {"type": "string", "pattern": "\\S"},
                },
                "description": {"type": "string"},
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "description": "Rollback: a new release from an old one's artifact and config.",
            "required": ["release"],
            "properties": {"release": {"type": "integer", "minimum": 1}},
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
    "properties": FORMATION_FIELDS,
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
                "properties": {"type": PROCESS_TYPE, **FORMATION_FIELDS},
                "additionalProperties": False,
            },
        }
    },
    "additionalProperties": False,
}
DOMAIN_CREATE: Schema = {
    "type": "object",
    "required": ["hostname"],
    "properties": {
        "hostname": {
            "type": "string",
            "maxLength": 253,
            "pattern": r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
            r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$",
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
            "properties": {"name": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,49}$"}},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


def with_plans(plans: list[str]) -> Schema:
    """ADDON_CREATE with ``plan`` narrowed to what this server offers."""
    properties = {**ADDON_CREATE["properties"], "plan": {"type": "string", "enum": plans}}
    return {**ADDON_CREATE, "properties": properties}


TOKEN_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 200}
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
