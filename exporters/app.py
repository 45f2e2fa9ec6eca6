"""HTTP: /metrics (every target), /probe?target=NAME (one), /healthz, /readyz.

/metrics is the Prometheus text format 0.0.4, as postgres_exporter and
redis_exporter serve it. The snapshot part is assembled from the targets'
pre-rendered chunks (see :mod:`exporters.collector`) once per snapshot
generation, in a worker thread right after each poll round, and reused until a
poll changes something; the process metrics are rendered on every request.

The exporter's ``process_*`` series come once without a target (the exporter
itself) and once more per target, with that target's labels: a community
exporter serves one database, so dashboards 9628 read ``process_*`` of the
``instance`` they show, and under the documented relabelling (``target`` ->
``instance``, or ``/probe``) that instance is the add-on. Each copy describes
this one process, so sum them over targets and it is counted once per target.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from exporters.collector import SnapshotStore, TargetSnapshot, label_text, number_text
from kit.ops import ReadyCheck, add_health_routes


def process_text(
    process: Collector, snapshots: Iterable[TargetSnapshot], *, unlabelled: bool = True
) -> str:
    """``process_*`` families: the unlabelled samples (unless not), then one copy per target."""
    bases = [s.base_text for s in snapshots]
    parts: list[str] = []
    for metric in process.collect():
        # prometheus_client's own munging for the 0.0.4 text: a counter's TYPE is NAME_total
        name = f"{metric.name}_total" if metric.type == "counter" else metric.name
        doc = metric.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        parts.append(f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n")
        for sample in metric.samples:
            value = number_text(sample.value)
            own = label_text(sorted(sample.labels.items()))
            if unlabelled:
                parts.append(
                    f"{sample.name}{{{own}}} {value}\n" if own else f"{sample.name} {value}\n"
                )
            for base in bases:
                labels = f"{base},{own}" if own else base
                parts.append(f"{sample.name}{{{labels}}} {value}\n")
    return "".join(parts)


class Exposition:
    """The rendered /metrics body, cached per snapshot generation, and /probe bodies."""

    def __init__(self, *, store: SnapshotStore, process: Collector | None = None) -> None:
        self._store = store
        self._process = process
        self._cached: tuple[int, bytes] | None = None
        self.renders = 0
        self.background = False
        """Set by the poll loop, which calls :meth:`refresh` after every round."""

    def refresh(self) -> bytes:
        """The snapshot part, rendered again if a poll changed something since.

        The exporter calls this in a worker thread after each poll round (rendering 200
        add-ons' ~67k lines is ~20 ms of CPU), so a scrape normally finds it ready.
        """
        generation = self._store.generation
        cached = self._cached
        if cached is None or cached[0] != generation:
            cached = self._cached = (generation, self._store.render_bytes())
            self.renders += 1
        return cached[1]

    def parts(self) -> list[bytes]:
        """The body in two parts, so a scrape does not copy the cached megabytes.

        With ``background`` set (the exporter's poll loop refreshes after each round),
        a scrape in the middle of a round gets the last round's body rather than
        assembling a half-polled one on the event loop.
        """
        cached = self._cached
        parts = [cached[1] if self.background and cached is not None else self.refresh()]
        if self._process is not None:
            parts.append(process_text(self._process, self._store.snapshots()).encode())
        return parts

    def body(self) -> bytes:
        return b"".join(self.parts())

    def probe(self, name: str) -> bytes | None:
        """One target's series, as a community exporter serving only it would give them."""
        snapshot = self._store.get(name)
        if snapshot is None:
            return None
        body = self._store.render_bytes(only=name)
        if self._process is not None:
            # the target's copy only: Prometheus gives everything here the target's instance
            body += process_text(self._process, [snapshot], unlabelled=False).encode()
        return body


def exporter_app(*, exposition: Exposition, ready: ReadyCheck) -> web.Application:
    async def metrics(request: web.Request) -> web.StreamResponse:
        parts = exposition.parts()
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
        response.content_length = sum(len(part) for part in parts)
        await response.prepare(request)
        for part in parts:
            await response.write(part)
        await response.write_eof()
        return response

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
