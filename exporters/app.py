"""HTTP: /metrics (every target), /probe?target=NAME (one), /healthz, /readyz.

/metrics is the Prometheus text format 0.0.4, as postgres_exporter and
redis_exporter serve it. The snapshot part is assembled from the targets'
pre-rendered chunks (see :mod:`exporters.collector`) once per snapshot
generation and reused until a poll changes something; ``live`` (process
metrics) is rendered on every request.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from control.kit.ops import ReadyCheck, add_health_routes
from exporters.collector import SnapshotCollector, SnapshotStore


class Exposition:
    """The rendered /metrics body, cached per snapshot generation."""

    def __init__(self, *, store: SnapshotStore, live: CollectorRegistry | None = None) -> None:
        self._store = store
        self._live = live
        self._cached: tuple[int, bytes] | None = None
        self.renders = 0

    def body(self) -> bytes:
        generation = self._store.generation
        if self._cached is None or self._cached[0] != generation:
            self._cached = (generation, self._store.render().encode())
            self.renders += 1
        body = self._cached[1]
        if self._live is not None:
            body += generate_latest(self._live)
        return body

    def probe(self, name: str) -> bytes | None:
        if self._store.get(name) is None:
            return None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(self._store, only=name))
        return generate_latest(registry)


def exporter_app(*, exposition: Exposition, ready: ReadyCheck) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=exposition.body(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )

    async def probe(request: web.Request) -> web.Response:
        name = request.query.get("target", "")
        if not name:
            return web.Response(status=400, text="missing ?target=NAME\n")
        body = exposition.probe(name)
        if body is None:
            return web.Response(status=404, text=f"no target named {name!r}\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probe", probe)
    add_health_routes(app, ready=ready)
    return app
