"""The API's aiohttp application: error rendering, request metrics, the routes, ops endpoints."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from control.api.routes import BUILDS, CONTROL, error_body, register
from control.building import Builds
from control.errors import AddonError, ApiError, StoreError, TargetUnavailable
from control.kit.ops import ReadyCheck, add_ops_routes
from control.service import Control

log = logging.getLogger(__name__)

Next = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: aiohttp's own refusals, in the API's error shape.
_HTTP_IDS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def _error(status: int, body: dict[str, object]) -> web.Response:
    return web.json_response(body, status=status)


@web.middleware
async def errors(request: web.Request, handler: Next) -> web.StreamResponse:
    """Every failure becomes ``{id, message}`` with its status; no traceback reaches a client."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, error_body(exc))
    except AddonError as exc:
        log.error("add-on server failed", extra={"error": str(exc), "path": request.path})
        return _error(503, {"id": "addon_service_unavailable", "message": str(exc)})
    except TargetUnavailable as exc:
        log.error("agent unavailable", extra={"error": str(exc), "path": request.path})
        return _error(503, {"id": "agent_unavailable", "message": str(exc)})
    except StoreError as exc:
        log.error("state store failed", extra={"error": str(exc), "path": request.path})
        return _error(503, {"id": "store_unavailable", "message": str(exc)})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        ident = _HTTP_IDS.get(exc.status, "error")
        response = _error(exc.status, {"id": ident, "message": exc.reason})
        if "Allow" in exc.headers:
            # RFC 9110: a 405 says which methods the resource has.
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        # A bug: logged with its traceback here, a constant message to the client.
        log.exception("unexpected error", extra={"method": request.method, "path": request.path})
        return _error(
            500, {"id": "internal_error", "message": "internal error; see the server log"}
        )


def _metrics(registry: CollectorRegistry) -> Callable[..., Awaitable[web.StreamResponse]]:
    requests = Counter(
        "slipway_control_requests",
        "API requests by route and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    seconds = Histogram(
        "slipway_control_request_duration_seconds",
        "API request latency by route.",
        ["method", "route"],
        registry=registry,
    )

    @web.middleware
    async def count(request: web.Request, handler: Next) -> web.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        # The route template, never the raw path: app names would explode the labels.
        route = resource.canonical if resource is not None else "unmatched"
        response = await handler(request)
        requests.labels(request.method, route, str(response.status)).inc()
        seconds.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    return count


class _NoSink:
    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        pass


_NO_SINK = _NoSink()


def build_app(
    control: Control,
    *,
    registry: CollectorRegistry,
    ready: ReadyCheck,
    builds: Builds | None = None,
) -> web.Application:
    app = web.Application(middlewares=[_metrics(registry), errors], client_max_size=1024**2)
    app[CONTROL] = control
    # Without a builder, builds are still listed (made before, or by another replica);
    # creating one is refused.
    app[BUILDS] = builds or Builds(control, builder=None, sink=_NO_SINK)
    add_ops_routes(app, registry=registry, ready=ready)
    register(app)
    return app
