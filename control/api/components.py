"""JSON Schemas of the API's answers (OpenAPI components), for the document (data, no logic).

Apart from the request bodies (``control/api/schemas.py``): what the server
sends is one long table, what it accepts the rules a client must follow.
"""

from __future__ import annotations

from control.api.schemas import (
    APP_NAME,
    FORMATION_FIELDS,
    PROCESS_TYPE,
    TIME,
    Schema,
)

_DECISION: Schema = {
    "type": "object",
    "required": ["at", "process", "from", "to", "reason"],
    "properties": {
        "at": {"type": "number"},
        "process": {"type": "string"},
        "from": {"type": "integer"},
        "to": {"type": "integer"},
        "reason": {
            "type": "string",
            "enum": ["panic", "load", "idle", "bounds", "panic_start", "panic_end"],
        },
        "avg_concurrency": {"type": ["number", "null"]},
        "panic_concurrency": {"type": ["number", "null"]},
        "panicking": {"type": "boolean"},
    },
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
            "maintenance": {"type": "boolean"},
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
    "Autoscale": {
        "type": "object",
        "required": ["app", "process", "enabled", "desired", "decisions"],
        "properties": {
            "app": APP_NAME,
            "process": PROCESS_TYPE,
            "enabled": {"type": "boolean"},
            "running": {"type": "boolean"},
            "settings": {"type": ["object", "null"]},
            "min": {"type": "integer"},
            "max": {"type": "integer"},
            "desired": {"type": "integer"},
            "panicking": {"type": "boolean"},
            "avg_concurrency": {"type": ["number", "null"]},
            "panic_concurrency": {"type": ["number", "null"]},
            "decisions": {"type": "array", "items": _DECISION},
        },
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
            "size": {"type": "string"},
            "memory": {
                "type": ["object", "null"],
                "description": "The last sample (every ~20 s): bytes of RSS, cache and "
                "swap, and the quota past which R14 is logged (R15 kills at twice it).",
                "properties": {
                    "rss": {"type": "integer"},
                    "cache": {"type": "integer"},
                    "swap": {"type": "integer"},
                    "quota": {"type": "integer"},
                },
            },
            "cpu": {
                "type": ["object", "null"],
                "description": "CPU seconds used since start, and cores used lately.",
                "properties": {"seconds": {"type": "number"}, "load": {"type": "number"}},
            },
            "created_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "Plan": {
        "type": "object",
        "required": ["name", "default", "limits"],
        "properties": {
            "name": {"type": "string"},
            "default": {"type": "boolean"},
            "limits": {"type": "object"},
        },
    },
    "ReviewStatus": {
        "type": "object",
        "required": ["app", "state", "reason", "updated_at"],
        "properties": {
            "app": {"type": "object", "properties": {"name": APP_NAME}},
            "state": {"enum": ["pending", "deployed", "destroyed", "failed"]},
            "reason": {"type": "string"},
            "commit": {"type": ["string", "null"]},
            "delivery": {"type": ["string", "null"]},
            "updated_at": TIME,
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
            "provision_message": {"type": "string"},
            "message": {
                "type": "string",
                "description": "What a plan change did beyond the plan (a dedicated Redis "
                "restarted on it, its keys gone).",
            },
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
