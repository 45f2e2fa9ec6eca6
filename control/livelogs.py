"""Live logs in a browser: the control plane relays the logs service's SSE stream.

How a signed-in browser reads logs: it never holds a token. The dashboard checks
the session may see the app, then calls ``relay`` from its handler for
``GET /dashboard/apps/{app}/logs/stream`` (control/dashboard/live_views.py: same
origin, so the session cookie goes along, and no CORS). ``relay`` opens the logs
service's ``/apps/{app}/logs`` with the control plane's own token (the admin token
it already holds, ``LogsUpstream``) and copies the bytes through as they come, so
ids, ``missed`` and ``dropped`` events and the service's keep-alives reach the
browser unchanged.

Resume: ``Last-Event-ID`` (sent by EventSource itself when it reconnects) and
``?last_event_id=`` (sent by live-logs.js when it reopens the stream after the tab
was in the background) are both passed on, so the logs service's gap-free resume
(logs/http.py) holds through the relay. Only ``source``, ``process``, ``lines`` and
``tail`` are passed besides: a browser cannot reach the archive or another app.

An application that relays calls ``install`` once: it gets one keep-alive client for every
relayed stream, and its shutdown ends the open streams at once. Without that, a stopping
control plane waited for each stream's next keep-alive (15 s) or its shutdown timeout.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp
from aiohttp import web

from control.rules import validate_app_name
from control.settings import ControlSettings

log = logging.getLogger(__name__)

#: Query parameters a browser may pass to the logs service (see module docstring).
PASSED = ("source", "process", "lines", "tail", "last_event_id")
#: Connect timeout to the logs service; once streaming, a stream has no total timeout.
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class LogsUpstream:
    """The logs service and a token it accepts for every app (the control plane's own)."""

    url: str
    token: str


@dataclass(slots=True)
class Relays:
    """One application's relay client and the upstream streams open through it."""

    session: aiohttp.ClientSession | None = None
    open: set[aiohttp.ClientResponse] = field(default_factory=set)


RELAYS = web.AppKey("livelogs-relays", Relays)


def install(app: web.Application) -> None:
    """Make ``app`` able to relay: its client session, and its streams ended at shutdown."""
    app[RELAYS] = Relays()
    app.cleanup_ctx.append(_client)
    app.on_shutdown.append(_end_streams)


async def _client(app: web.Application) -> AsyncIterator[None]:
    relays = app[RELAYS]
    relays.session = aiohttp.ClientSession()
    yield
    await relays.session.close()


async def _end_streams(app: web.Application) -> None:
    for up in list(app[RELAYS].open):
        up.close()  # the relay's read ends, and its handler returns


def upstream_from_settings(settings: ControlSettings) -> LogsUpstream | None:
    """``SLIPWAY_LOGS_URL`` (builds.logs_url) and the admin token, when both are known."""
    url = settings.builds.logs_url if settings.builds is not None else None
    token = settings.bootstrap_admin_token
    if not url or not token:
        return None
    return LogsUpstream(url.rstrip("/"), token)


async def relay(
    request: web.Request,
    *,
    app: str,
    upstream: LogsUpstream,
) -> web.StreamResponse:
    """Stream ``app``'s logs (SSE) to ``request``'s client; the caller has checked access.

    ``request.app`` must have been through ``install``.
    Answers 502 with a plain message when the logs service cannot be reached or refuses.
    """
    validate_app_name(app)
    params = {k: v for k, v in request.query.items() if k in PASSED}
    params.setdefault("tail", "1")
    headers = {"Authorization": f"Bearer {upstream.token}", "Accept": "text/event-stream"}
    if last := request.headers.get("Last-Event-ID"):
        headers["Last-Event-ID"] = last
    url = f"{upstream.url}/apps/{quote(app)}/logs"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
    relays = request.app[RELAYS]
    assert relays.session is not None, "livelogs.install(app) was not called"
    try:
        async with relays.session.get(url, params=params, headers=headers, timeout=timeout) as up:
            if up.status != 200:
                text = (await up.text())[:500]
                if up.status == 400:  # the browser's own query (a bad source, id): its fault
                    raise web.HTTPBadRequest(text=text)
                log.warning(
                    "logs service refused the relay", extra={"app": app, "status": up.status}
                )
                raise web.HTTPBadGateway(text=f"the logs service answered {up.status}: {text}")
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            relays.open.add(up)
            try:
                async for chunk in up.content.iter_any():
                    await response.write(chunk)
            except (ConnectionError, aiohttp.ClientError, TimeoutError):
                # Either side went (a closed tab, a restarted logs service, a shutdown):
                # the stream ends, and EventSource reconnects with Last-Event-ID.
                pass
            finally:
                relays.open.discard(up)
            return response
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("logs service unreachable", extra={"app": app, "error": repr(exc)})
        raise web.HTTPBadGateway(
            text="the logs service cannot be reached; try again in a moment\n"
        ) from exc
