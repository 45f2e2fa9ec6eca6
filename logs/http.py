"""The HTTP API: ``GET /apps/{app}/logs`` (SSE or text tail, or archive reads) and ops routes.

SSE: every line is ``id: {seq}`` + ``data: {json}``; a reconnect with
``Last-Event-ID`` gets exactly the lines after it while they are in the ring,
and a ``missed`` event with the count when some are gone. A subscriber that
cannot keep up gets a ``dropped`` event where lines were left out.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from kit.ops import ReadyCheck, add_ops_routes
from logs.archive import ObjectStore, hour_prefixes, lines_in, ndjson
from logs.auth import TokenVerifier
from logs.errors import ArchiveError, VerifierError
from logs.metrics import LogsMetrics
from logs.model import LogLine, Source, WireLine, heroku_format, valid_app
from logs.platform import add_platform_route
from logs.ring import Filter, Gap, Hub, Missed
from logs.service import LogService

log = logging.getLogger(__name__)

#: Heroku's ``logs`` shows 100 lines unless asked otherwise.
DEFAULT_LINES = 100
#: An archive read spans at most a week of hourly prefixes and returns at most this many
#: lines, so one request cannot pin the service for minutes.
MAX_ARCHIVE_SPAN = 7 * 86400.0
MAX_ARCHIVE_LINES = 100_000

HUB = web.AppKey("hub", Hub)
VERIFIER = web.AppKey("verifier", TokenVerifier)
STORE = web.AppKey("store", ObjectStore)
METRICS = web.AppKey("metrics", LogsMetrics)
HEARTBEAT = web.AppKey("heartbeat", float)


def build_app(
    *,
    hub: Hub,
    verifier: TokenVerifier,
    metrics: LogsMetrics,
    registry: CollectorRegistry,
    ready: ReadyCheck,
    store: ObjectStore | None = None,
    heartbeat: float = 15.0,
    ingest: LogService | None = None,
    platform_token: str | None = None,
) -> web.Application:
    app = web.Application(middlewares=[_errors])
    app[HUB] = hub
    app[VERIFIER] = verifier
    app[METRICS] = metrics
    app[HEARTBEAT] = heartbeat
    if store is not None:
        app[STORE] = store
    app.router.add_get("/apps/{app}/logs", logs_handler)
    if ingest is not None:
        add_platform_route(app, ingest, platform_token)
    add_ops_routes(app, registry=registry, ready=ready)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ArchiveError as exc:
        log.warning("archive read failed", extra={"error": str(exc)})
        raise web.HTTPServiceUnavailable(text="archive unavailable, try again\n") from exc


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=message + "\n")


async def _authorize(request: web.Request, app: str) -> None:
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    # EventSource in a browser cannot set headers; ?token= is the usual way out.
    token = token or request.query.get("token", "")
    if not token:
        raise web.HTTPUnauthorized(
            text="a bearer token is required\n", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        allowed = await request.app[VERIFIER].allows(token, app=app)
    except VerifierError as exc:
        log.error("cannot verify a token", extra={"app": app, "error": str(exc)})
        raise web.HTTPServiceUnavailable(
            text="cannot check the token now (control plane unreachable); try again\n"
        ) from exc
    if not allowed:
        raise web.HTTPForbidden(text=f"this token may not read {app}'s logs\n")


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low} and {high}, got {value}")
    return value


#: 9999-12-31T23:59:59Z, the last second a datetime holds.
_LAST_SECOND = 253402300799


def parse_time(raw: str, name: str) -> float:
    """Unix seconds or ISO 8601 (``2026-11-23T10:00:00Z``; naive means UTC)."""
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        # NaN, inf and 1e20 pass float() but no datetime holds them (a 500 in the archive).
        if not 0 <= seconds <= _LAST_SECOND:
            raise _bad(f"{name} must be unix seconds from 0 to {_LAST_SECOND}, got {raw!r}")
        return seconds
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"{name} must be unix seconds or ISO 8601, got {raw!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _filter(request: web.Request) -> Filter:
    source = request.query.get("source")
    if source is not None and source not in {s.value for s in Source}:
        raise _bad(f"source must be one of app, router, build, release; got {source!r}")
    process = request.query.get("process") or None
    return Filter(Source(source) if source else None, process)


async def logs_handler(request: web.Request) -> web.StreamResponse:
    app = request.match_info["app"]
    if not valid_app(app):
        raise _bad(f"not an app name: {app!r}")
    await _authorize(request, app)
    flt = _filter(request)
    text = request.query.get("format") == "text"
    if "since" in request.query or "until" in request.query:
        return await _archive(request, app, flt, text)
    hub = request.app[HUB]
    lines = _int(request, "lines", DEFAULT_LINES, 0, 100_000)
    tail = request.query.get("tail", "0") not in ("0", "false", "no")
    if "tail" in request.query and request.query["tail"] == "":
        tail = True
    last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    after: int | None = None
    if last_id is not None:
        try:
            after = int(last_id)
        except ValueError:
            raise _bad(f"Last-Event-ID must be an integer, got {last_id!r}") from None
    # No await between history and subscribe: nothing can fall between them.
    history, missed = hub.history(app, flt, lines=lines, after=after)
    sub = hub.subscribe(app, flt) if tail else None
    metrics = request.app[METRICS]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/plain; charset=utf-8" if text else "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    write = _text_writer(app) if text else _sse_writer(app)
    try:
        metrics.subscribers.inc()
        await response.prepare(request)
        chunk = []
        if missed is not None:
            chunk.append(write(missed))
        chunk.extend(write(line) for line in history)
        if chunk:
            await response.write("".join(chunk).encode())
        heartbeat = request.app[HEARTBEAT]
        while sub is not None:
            items = await sub.wait(heartbeat)
            if not items:
                await response.write(b"\n" if text else b": keep-alive\n\n")
                continue
            await response.write("".join(write(item) for item in items).encode())
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        metrics.subscribers.dec()
        if sub is not None:
            hub.unsubscribe(app, sub)
    return response


@functools.lru_cache(maxsize=4096)
def _sse_event(app: str, line: LogLine) -> str:
    """Encoded once per line, not once per subscriber: 100 tails of one app cost one encode."""
    return f"id: {line.seq}\ndata: {ndjson(app, line)[:-1]}\n\n"


def _sse_writer(app: str) -> Callable[[LogLine | Gap | Missed], str]:
    def write(item: LogLine | Gap | Missed) -> str:
        if isinstance(item, LogLine):
            return _sse_event(app, item)
        if isinstance(item, Gap):
            return f'event: dropped\ndata: {{"count": {item.count}}}\n\n'
        count = "null" if item.count is None else str(item.count)
        return f'event: missed\ndata: {{"count": {count}}}\n\n'

    return write


def _text_writer(app: str) -> Callable[[LogLine | Gap | Missed], str]:
    def write(item: LogLine | Gap | Missed) -> str:
        if isinstance(item, LogLine):
            return heroku_format(item.to_wire(app)) + "\n"
        if isinstance(item, Gap):
            return f"-- dropped {item.count} lines: this client is too slow --\n"
        if item.count is None:
            return "-- lines may be missing: the logs service restarted --\n"
        return f"-- missed {item.count} lines: no longer in the buffer --\n"

    return write


async def _archive(request: web.Request, app: str, flt: Filter, text: bool) -> web.Response:
    now = dt.datetime.now(dt.UTC).timestamp()
    since = parse_time(request.query.get("since", str(now - 3600)), "since")
    until = parse_time(request.query["until"], "until") if "until" in request.query else now
    if until < since:
        raise _bad("until is before since")
    if until - since > MAX_ARCHIVE_SPAN:
        raise _bad("since..until spans more than 7 days; ask for less")
    store = request.app.get(STORE)
    if store is None:
        raise web.HTTPNotFound(text="this logs service has no archive configured\n")
    found: list[WireLine] = []
    for prefix in hour_prefixes(app, since, until):
        for key in sorted(await store.keys(prefix), key=_key_order):
            for line in lines_in(await store.get(key), since, until):
                if _wire_matches(flt, line):
                    found.append(line)
            if len(found) >= MAX_ARCHIVE_LINES:
                break
    found.sort(key=lambda w: w["seq"])
    found = found[:MAX_ARCHIVE_LINES]
    if text:
        return web.Response(text="".join(heroku_format(w) + "\n" for w in found))
    body = "".join(json.dumps(w, ensure_ascii=False) + "\n" for w in found)
    return web.Response(text=body, content_type="application/x-ndjson")


def _key_order(key: str) -> int:
    return int(key.rsplit("/", 1)[1].split("-", 1)[0])


def _wire_matches(flt: Filter, line: WireLine) -> bool:
    if flt.source is not None and line["source"] != flt.source.value:
        return False
    if flt.process is not None:
        p = line["process"]
        return p == flt.process or p.startswith(flt.process + ".")
    return True
