"""/healthz, /readyz and /metrics for any component's aiohttp application.

/healthz answers while the process can serve at all (liveness); /readyz
answers 200 only while ``ready()`` says so, with the reason otherwise, so an
operator reading a failed probe knows what to fix.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

#: ``ready()`` returns None when ready, or a short reason why not.
ReadyCheck = Callable[[], str | None]


def add_health_routes(app: web.Application, *, ready: ReadyCheck) -> None:
    """/healthz and /readyz alone, for an app that serves its own /metrics."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        reason = ready()
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def add_ops_routes(app: web.Application, *, registry: CollectorRegistry, ready: ReadyCheck) -> None:
    add_health_routes(app, ready=ready)

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    app.router.add_get("/metrics", metrics)


def ops_app(*, registry: CollectorRegistry, ready: ReadyCheck) -> web.Application:
    app = web.Application()
    add_ops_routes(app, registry=registry, ready=ready)
    return app


def bound_port(site: web.TCPSite) -> int:
    """The port a started site listens on (tests ask for port 0, a free one)."""
    server = site._server  # aiohttp keeps the (uvloop or asyncio) server here
    sockets: list[socket.socket] = list(getattr(server, "sockets", None) or [])
    if not sockets:
        raise RuntimeError("the site is not listening; start() it first")
    port: int = sockets[0].getsockname()[1]
    return port
