"""The request charts' endpoints: ``/apps/{app}/metrics/requests`` and ``/apps/{app}/events``.

Handlers of the one route table (routes.py names them); what they read is a
``RequestSource`` (control/rollup/source.py) the composition sets on the
application under ``REQUESTS``: the rollup under ``slipway up``, Prometheus on
Kubernetes. Without one the charts answer 404 ``charts_unavailable``.

A token for another app gets 404, as for an app that does not exist: an app token
cannot learn which other apps there are from the charts.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from control.errors import BadRequest, NotFound
from control.rollup.source import RequestSource
from control.rollup.store import COARSE, FINE, EventJson

if TYPE_CHECKING:
    from control.api.routes import Call
    from control.service import Control

REQUESTS: web.AppKey[RequestSource] = web.AppKey("requests", RequestSource)
#: Audit entries read for the deploys and restarts on a chart's time axis.
MAX_AUDIT = 20_000
_AUDIT_PAGE = 1000
_AUDIT_EVENTS = {"release.create": "deploy", "dyno.restart": "restart"}

#: The steps a chart may ask for, in seconds: whole minutes that divide an hour or a day.
STEPS = (60, 120, 300, 600, 1200, 1800, 3600, 10800, 21600, 43200, 86400)
METRICS_QUERY = ("since", "step")
EVENTS_QUERY = ("since",)
#: How the OpenAPI document describes the query parameters (control/api/openapi.py).
QUERY_SCHEMAS: dict[str, Any] = {
    "since": {"type": "string", "pattern": "^[0-9]{1,10}(\\.[0-9]{1,6})?$"},
    "step": {"type": "string", "enum": [str(s) for s in STEPS]},
}


def _since(query: Mapping[str, str], now: float) -> float:
    """``since`` (unix seconds; default an hour ago), clamped to the 7 days kept and to now."""
    raw = query.get("since")
    if raw is None:
        return now - 3600.0
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"since must be unix seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"since must be unix seconds, got {raw!r}")
    return min(max(value, now - COARSE[1]), now)


async def _app(call: Call) -> str:
    """The path's app, if this token may see it; 404 alike for another's and for none."""
    app = call.app
    if not call.principal.may_act_on(app):
        raise NotFound(f"no app named {app!r}", id="app_not_found")
    await call.control.get_app(app)
    return app


def _source(request: web.Request) -> RequestSource:
    source = request.app.get(REQUESTS)
    if source is None:
        raise NotFound(
            "request charts are not configured here: under `slipway up` they come from the "
            "routers; on Kubernetes set SLIPWAY_PROMETHEUS_URL",
            id="charts_unavailable",
        )
    return source


def _reply(data: Any) -> web.Response:
    return web.json_response(data, dumps=json.dumps)


async def request_metrics(call: Call) -> web.Response:
    app = await _app(call)
    source = _source(call.request)
    return _reply(await requests_payload(source, app, call.request.query, now=time.time()))


async def app_events(call: Call) -> web.Response:
    app = await _app(call)
    source = call.request.app.get(REQUESTS)
    payload = await events_payload(call.control, source, app, call.request.query, now=time.time())
    return _reply(payload)


# -- what the handlers answer; the dashboard calls these for a signed-in user -------------


async def requests_payload(
    source: RequestSource, app: str, query: Mapping[str, str], *, now: float
) -> dict[str, Any]:
    """The charts' points for ``app`` (the caller has checked access and that it exists).

    ``query``: ``since`` (unix seconds; default an hour ago; clamped to the 7 days kept)
    and ``step`` (one of ``STEPS``; default 60 within the last 2 hours, else 600). Minutes
    are kept 2 hours: an older ``since`` is answered in 600 s steps at least. The answer's
    ``since`` and ``step`` say what was served. Raises ``BadRequest`` (400) on a malformed one.
    """
    since = _since(query, now)
    recent = since >= now - FINE[1]
    raw = query.get("step")
    if raw is None:
        # At most 120 minutes or 1008 ten-minute points: a chart draws either.
        step = FINE[0] if recent else COARSE[0]
    else:
        if not raw.isdigit() or int(raw) not in STEPS:
            raise BadRequest(f"step must be one of {', '.join(map(str, STEPS))} (seconds)")
        step = int(raw) if recent else max(int(raw), COARSE[0])
    until = now
    points = await source.points(app, since=since, until=until, step=step)
    return {"app": app, "source": source.name, "since": since, "until": until, "step": step,
            "points": points}  # fmt: skip


async def events_payload(
    control: Control,
    source: RequestSource | None,
    app: str,
    query: Mapping[str, str],
    *,
    now: float,
) -> dict[str, Any]:
    """Deploys and restarts (the audit log) and the source's sleeps, wakes and crashes,
    from ``since`` (as for the points) to now."""
    since, until = _since(query, now), now
    found: list[EventJson] = []
    if source is not None:
        found.extend(await source.events(app, since=since, until=until))
    after: int | None = None
    for _ in range(MAX_AUDIT // _AUDIT_PAGE):
        page = await control.audit(app=app, after=after, limit=_AUDIT_PAGE)
        for entry in page:
            kind = _AUDIT_EVENTS.get(entry.action)
            if kind is not None and since <= entry.at <= until:
                found.append({"t": entry.at, "kind": kind, "detail": _detail(entry.detail)})
        if len(page) < _AUDIT_PAGE:
            break
        after = page[-1].id
    found.sort(key=lambda e: e["t"])
    return {"app": app, "since": since, "until": until, "events": found}


def _detail(detail: dict[str, Any]) -> str:
    if "version" in detail:
        return f"v{detail['version']} {detail.get('description', '')}".strip()
    if "process" in detail:
        return str(detail["process"])
    return ""
