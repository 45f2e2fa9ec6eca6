"""The route table rendered as OpenAPI 3.1: what /openapi.json serves and schemathesis reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from control.api import components, live, schemas
from control.api.paging import range_pattern

if TYPE_CHECKING:
    from control.api.routes import Route

_STATUS_TEXT = {
    101: "Switching protocols: a WebSocket", 200: "OK", 201: "Created", 202: "Accepted",
    400: "Bad request", 401: "No or invalid token",
    403: "The token may not do this", 404: "Not found", 409: "Conflicts with the current state",
    413: "The body is larger than this endpoint takes",
    422: "Invalid parameters, or the release failed", 503: "A backing service is unavailable",
}  # fmt: skip


def document(routes: Sequence[Route], *, plans: list[str] | None = None) -> dict[str, Any]:
    """The document of ``routes``; with ``plans``, add-on plans as this server offers them."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMAS[name]}
            for name in _path_params(route.path)
        ]
        params += [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": _QUERY_SCHEMAS.get(name, {"type": "string"}),
            }
            for name in route.query
        ]
        responses: dict[str, Any] = {
            str(route.status): {
                "description": _STATUS_TEXT[route.status],
                "content": {route.media: {"schema": route.response or {}}},
            }
        }
        for status, schema in route.also:
            responses[str(status)] = {
                "description": _STATUS_TEXT[status],
                "content": {"application/json": {"schema": schema}},
            }
        if route.range_field is not None:
            params.append(
                {
                    "name": "Range",
                    "in": "header",
                    "required": False,
                    "description": f"'{route.range_field} ]LAST..; max=N' (Heroku-style)",
                    "schema": {
                        "type": "string",
                        "pattern": range_pattern(route.range_field, documented=True),
                    },
                }
            )
            responses["206"] = {
                "description": "A page; Next-Range says where the next one starts",
                "headers": {"Next-Range": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": route.response or {}}},
            }
        # 400 everywhere: any route refuses query parameters it does not know; 413 where a
        # body is read (past the JSON cap, or an upload past the token's cap).
        body_errors = {413} if route.body is not None else set()
        for status in sorted({400, *route.errors, *body_errors, 503}):
            responses[str(status)] = {
                "description": _STATUS_TEXT[status],
                "content": {"application/json": {"schema": schemas.ref("Error")}},
            }
        operation: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "parameters": params,
            "responses": responses,
        }
        if route.body is not None:
            body = route.body
            if route.body is schemas.ADDON_CREATE and plans is not None:
                body = schemas.with_plans(plans)
            content: dict[str, Any] = {"application/json": {"schema": body}}
            if route.tarball:
                content["application/gzip"] = {"schema": {"type": "string", "format": "binary"}}
            operation["requestBody"] = {"required": True, "content": content}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "slipway control plane",
            "version": "1",
            "description": (
                "Apps, config vars, builds, releases, formation, dynos and add-ons. Every JSON "
                "body is UTF-8, at most 1 MiB (413 past it) and 32 levels deep; it holds no "
                "NaN or Infinity, no number past 2**53 in magnitude, no lone UTF-16 surrogate "
                "and no NUL character (\u0000): a body that does is a 400."
            ),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components.COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_QUERY_SCHEMAS: dict[str, schemas.Schema] = {"app": schemas.APP_NAME, **live.QUERY_SCHEMAS}

_PATH_SCHEMAS: dict[str, schemas.Schema] = {
    "app": {"type": "string", "minLength": 1},
    "version": {"type": "string", "pattern": "^v?[0-9]{1,15}$"},
    "type": {"type": "string", "minLength": 1},
    "addon": {"type": "string", "minLength": 1},
    "hostname": {"type": "string", "minLength": 1},
    "id": {"type": "string", "minLength": 1},
    "service": {"type": "string", "minLength": 1},
}


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
