"""Whichever agent replica a router or the control plane reaches answers: followers forward.

Only the leader decides (wakes, sleeps, definitions, the route table), so a
follower passes every ``/v1/`` request on to the leader's advertised URL and
relays the answer. Bounded: a long poll of the route feed gets the feed's
timeout plus a margin, a one-off run (``POST /v1/apps/{app}/run``) its body's timeout plus a
margin, everything else ``forward_timeout``. When no leader is
known, or it cannot be reached, the answer is a clear 503 the caller can
retry; a request that was already forwarded once is never forwarded again, so
two replicas that each think the other leads cannot bounce it between them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from agent.once import DEFAULT_RUN_TIMEOUT, MAX_RUN_TIMEOUT
from kit import jsonbody

log = logging.getLogger(__name__)

#: Marks a forwarded request (value: the forwarding replica) so it is never forwarded twice.
FORWARDED = "X-Slipway-Forwarded-By"
#: Says who answered: "leader" locally, or the URL a follower forwarded to.
ANSWERED = "X-Slipway-Answered-By"
#: Headers not to copy across the hop (aiohttp sets its own).
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "host",
        "te",
        "upgrade",
        "proxy-connection",
    }
)
#: Seconds a forwarded route-feed long poll may take beyond the feed's own timeout.
FEED_MARGIN = 5.0
#: Seconds a forwarded one-off run (``POST /v1/apps/{app}/run``) may take beyond its own timeout.
RUN_MARGIN = 30.0
#: Seconds between looks at the Lease while no leader can take a request.
RETRY_EVERY = 0.05

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Leadership(Protocol):
    """What the forwarder asks: do we lead (and are we ready to), and else where is the leader."""

    def leading(self) -> str | bool:
        """True when this replica answers itself; False to forward; a string: 503 with that."""

    def leader_url(self) -> str | None:
        """The leader's API URL, or None while no leader is known."""

    def refresh(self) -> None:
        """Look at the Lease again soon: the leader we know of did not answer."""

    @property
    def me(self) -> str: ...


def _unavailable(message: str) -> web.Response:
    return web.Response(
        status=503,
        text=json.dumps({"error": message}),
        content_type="application/json",
        headers={"Retry-After": "1"},
    )


def forwarding(
    leadership: Leadership,
    *,
    session: Callable[[], aiohttp.ClientSession],
    timeout: float,
    feed_timeout: float,
) -> Middleware:
    """The aiohttp middleware: ``/v1/`` on a follower goes to the leader."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if FORWARDED in request.headers:
            # One hop at most: answer here once we lead (a just-elected leader is starting:
            # wait for it), else say so; never forward again.
            while (state := leadership.leading()) is not True:
                if state is False or loop.time() + RETRY_EVERY >= deadline:
                    return _unavailable(
                        f"forwarded by {request.headers[FORWARDED]} to {leadership.me}, "
                        f"which does not lead ({state or 'a follower'}); the Lease is "
                        "changing hands"
                    )
                await asyncio.sleep(RETRY_EVERY)
            return await handler(request)
        limit = timeout
        if request.path == "/v1/routes" and "after" in request.query:
            limit = feed_timeout + FEED_MARGIN
        body = await request.read()
        is_run = request.method == "POST" and request.path.endswith("/run")
        if is_run:
            limit = max(limit, run_limit(body))
        # A hand-over (the leader went away, or we were just elected and are learning the
        # apps) takes a moment: wait for it within the timeout instead of failing at once.
        while True:
            state = leadership.leading()
            if state is True:
                return await handler(request)
            url = leadership.leader_url() if state is False else None
            problem: str
            if isinstance(state, str):
                problem = state
            elif url is None:
                problem = "no agent leads right now (leader election under way)"
            else:
                try:
                    return await _forward(request, body, url, leadership.me, session(), limit)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning(
                        "forward to the leader failed",
                        extra={"leader": url, "path": request.path, "error": repr(exc)},
                    )
                    problem = f"cannot reach the leader at {url}: {type(exc).__name__}"
                    leadership.refresh()
                    if is_run and not isinstance(exc, aiohttp.ClientConnectorError):
                        # The leader may have started it: never run a release command twice.
                        return _unavailable(f"{problem}; the run may have started")
            if loop.time() + RETRY_EVERY >= deadline:
                return _unavailable(problem)
            await asyncio.sleep(RETRY_EVERY)

    return middleware


def run_limit(body: bytes) -> float:
    """How long a forwarded one-off run may take: its own timeout (as the leader will bound
    it) plus a margin for the Job's start; a body the leader will refuse gets no extension."""
    try:
        data = jsonbody.decode(body or b"null")
    except jsonbody.BadBody:
        return 0.0
    raw = data.get("timeout", DEFAULT_RUN_TIMEOUT) if isinstance(data, dict) else None
    if not isinstance(raw, int | float) or isinstance(raw, bool) or raw <= 0:
        return 0.0
    return min(float(raw), MAX_RUN_TIMEOUT) + RUN_MARGIN


async def _forward(
    request: web.Request,
    body: bytes,
    url: str,
    me: str,
    session: aiohttp.ClientSession,
    limit: float,
) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    headers[FORWARDED] = me
    async with session.request(
        request.method,
        url + request.path_qs,
        data=body or None,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=limit),
        allow_redirects=False,
    ) as resp:
        payload = await resp.read()
        out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
        out[ANSWERED] = url
        return web.Response(status=resp.status, body=payload, headers=out)
