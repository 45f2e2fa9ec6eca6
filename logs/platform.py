"""``POST /platform/lines``: platform components' own lines about an app, over HTTP.

The forward port is for log shippers, which carry what tenant containers print, so
it never gives a platform source (logs/mapping.py). A platform component in
another process (the agent on Kubernetes, with R14/R15 and runtime-metrics lines)
posts here instead, with the platform token (the agent API's token in the chart,
``SLIPWAY_LOGS_PLATFORM_TOKEN``): only its holders may write ``dyno``, ``router``,
``release`` or ``build`` lines. ``app`` lines are refused here, as they come from
the processes' output. Without a token configured the route answers 404, so a
service nobody set up for it accepts nothing.

Body: ``{"lines": [{"app", "source", "process", "text", "time"}, ...]}``, at most
``MAX_LINES`` lines; the whole batch is checked before any line is kept, so a 4xx
keeps nothing and the sender may fix and resend it.
"""

from __future__ import annotations

import hmac
import json
import math
from typing import Any

from aiohttp import web

from logs.model import Source, valid_app
from logs.service import LogService

INGEST = web.AppKey("ingest", LogService)
PLATFORM_TOKEN = web.AppKey("platform_token", str)
#: Sources only the platform writes (the forward port relabels a claim to them).
PLATFORM_SOURCES = frozenset({Source.DYNO, Source.ROUTER, Source.RELEASE, Source.BUILD})
#: Lines per request: a sender batches about a second of lines; more is a sender's bug.
MAX_LINES = 1000
#: Bytes per request (1000 lines of 1 KiB, with room).
MAX_BODY = 2 * 1024 * 1024
#: A line's text is cut here, as a kept line is bounded on every other path.
MAX_TEXT = 10_000


def add_platform_route(app: web.Application, service: LogService, token: str | None) -> None:
    app[INGEST] = service
    if token:
        app[PLATFORM_TOKEN] = token
    app.router.add_post("/platform/lines", platform_lines_handler)


async def platform_lines_handler(request: web.Request) -> web.Response:
    token = request.app.get(PLATFORM_TOKEN)
    if token is None:
        raise web.HTTPNotFound(
            text="platform ingestion is off: set SLIPWAY_LOGS_PLATFORM_TOKEN to turn it on\n"
        )
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not given:
        raise web.HTTPUnauthorized(
            text="the platform token is required as a bearer token\n",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise web.HTTPForbidden(text="this token may not write platform lines\n")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    raw = await _body(request)
    try:
        body = json.loads(raw)
    except ValueError:
        raise _unprocessable("the body is not valid JSON", web.HTTPBadRequest) from None
    lines = [_checked(i, item) for i, item in enumerate(_lines_of(body))]
    service = request.app[INGEST]
    for app, source, process, text, at in lines:
        service.append(app, source, process, text, at)
    return web.Response(status=204)


async def _body(request: web.Request) -> bytes:
    """The whole body, at most MAX_BODY bytes: ``content.read(n)`` gives what has arrived so
    far, not n bytes, so a body in several TCP segments is read to its end here."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


def _lines_of(body: object) -> list[Any]:
    lines = body.get("lines") if isinstance(body, dict) else None
    if not isinstance(lines, list):
        raise _unprocessable('expected {"lines": [...]}')
    if len(lines) > MAX_LINES:
        raise _unprocessable(f"at most {MAX_LINES} lines per request, got {len(lines)}")
    return lines


def _checked(index: int, item: object) -> tuple[str, Source, str, str, float]:
    where = f"lines[{index}]"
    if not isinstance(item, dict):
        raise _unprocessable(f"{where} must be an object")
    app, source, process = item.get("app"), item.get("source"), item.get("process")
    text, at = item.get("text"), item.get("time")
    if not isinstance(app, str) or not valid_app(app):
        raise _unprocessable(f"{where}.app is not an app name: {app!r}")
    if source not in {s.value for s in PLATFORM_SOURCES}:
        raise _unprocessable(
            f"{where}.source must be one of {', '.join(sorted(PLATFORM_SOURCES))} "
            f"(app lines come from the processes' output), got {source!r}"
        )
    if not isinstance(process, str) or not 0 < len(process) <= 64:
        raise _unprocessable(f"{where}.process must name the process, like web.1")
    if not isinstance(text, str):
        raise _unprocessable(f"{where}.text must be a string")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at < 0:
        raise _unprocessable(f"{where}.time must be unix seconds")
    return app, Source(source), process, text[:MAX_TEXT], float(at)


def _unprocessable(
    message: str, kind: type[web.HTTPClientError] = web.HTTPUnprocessableEntity
) -> web.HTTPClientError:
    return kind(text=message + "\n")
