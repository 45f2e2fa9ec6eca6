"""``--workers N``: N router processes on one port, and one ops port for all of them.

The parent forks N workers that share the proxy port (SO_REUSEPORT). Worker
``i`` serves its own /metrics, /healthz and /readyz privately on
``127.0.0.1:(ops_port + 1 + i)``; the parent serves the ops port itself:

- ``/metrics``: every worker's exposition, merged, each sample labelled
  ``worker="i"`` (one scrape target per pod; ``sum by (app)`` in PromQL),
  plus ``slipway_router_worker_up{worker}``: 0 for a worker that did not
  answer, so a missing worker is visible rather than a silent drop in rates;
- ``/readyz``: ready when every worker is, else the reasons;
- ``/healthz``: while the parent runs (a dead worker ends the parent).

A worker that exits on its own takes the parent down with its exit code, so
the pod (or systemd) restarts the whole group: no home-made process manager.
A worker whose background task dies (its feed, report loop or sweeper) exits 1
under its own runner, naming the task; the parent then names the worker and
exits 1 too. Restarting just that worker was the alternative; it was not
chosen because the death is a bug, and a restart loop inside one pod would
hide it from the orchestrator that counts restarts and alerts on them.
SIGTERM/SIGINT go to every worker, which drain; the parent waits for them,
bounded by the drain grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from kit.ops import add_health_routes
from kit.runner import run
from kit.tasks import TaskSet
from router.settings import RouterSettings

log = logging.getLogger(__name__)

#: Seconds a worker has to answer the parent's scrape or probe.
WORKER_TIMEOUT = 5.0
#: How often the parent looks for a worker that exited.
REAP_INTERVAL = 0.2


@dataclass(frozen=True, slots=True)
class Worker:
    index: int
    pid: int
    ops_port: int


def worker_settings(settings: RouterSettings, index: int) -> RouterSettings:
    """Worker ``index``'s settings: the shared proxy port, a private ops port."""
    return replace(settings, ops_host="127.0.0.1", ops_port=settings.ops_port + 1 + index)


def merge(expositions: Iterable[tuple[str, str]]) -> list[Metric]:
    """Families from several ``(worker, exposition text)``, samples labelled by worker (pure)."""
    families: dict[str, Metric] = {}
    for worker, text in expositions:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                labels = {**sample.labels, "worker": worker}
                merged.samples.append(sample._replace(labels=labels))
    return list(families.values())


class _Merged(Collector):
    def __init__(self, metrics: Sequence[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def fork_workers(settings: RouterSettings, serve: Callable[[RouterSettings], int]) -> int:
    """Fork the workers, then supervise them from this process until a signal or a death."""
    workers: list[Worker] = []
    for index in range(settings.workers):
        own = worker_settings(settings, index)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = serve(own)
            finally:
                os._exit(code)
        workers.append(Worker(index, pid, own.ops_port))
    return run(functools.partial(supervise, settings, workers))


def _reap(pid: int) -> int | None:
    """The exit code of a child that has exited, without waiting; None while it runs."""
    done, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else None


async def supervise(
    settings: RouterSettings, workers: Sequence[Worker], tasks: TaskSet, stop: asyncio.Event
) -> int:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WORKER_TIMEOUT))
    exited: dict[int, int] = {}

    async def worker_texts(path: str) -> list[tuple[Worker, int, str]]:
        async def one(worker: Worker) -> tuple[Worker, int, str]:
            try:
                async with session.get(f"http://127.0.0.1:{worker.ops_port}{path}") as resp:
                    return worker, resp.status, await resp.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                return worker, 0, f"worker {worker.index} did not answer: {exc!r}"

        return list(await asyncio.gather(*(one(w) for w in workers)))

    async def metrics(_: web.Request) -> web.Response:
        answers = await worker_texts("/metrics")
        up = Metric("slipway_router_worker_up", "1 if the worker answered this scrape", "gauge")
        texts = []
        for worker, status, text in answers:
            up.add_sample("slipway_router_worker_up", {"worker": str(worker.index)}, status == 200)
            if status == 200:
                texts.append((str(worker.index), text))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged([*merge(texts), up]))
        return web.Response(
            body=generate_latest(registry), content_type="text/plain", charset="utf-8"
        )

    # /readyz asks the workers; add_health_routes's check is synchronous, so keep the last answer
    # fresh from a task instead of blocking a probe on N sub-requests.
    not_ready: list[str] = ["starting"]

    async def probe_workers() -> None:
        while True:
            answers = await worker_texts("/readyz")
            not_ready[:] = [
                f"worker {w.index}: {text.strip() or status}"
                for w, status, text in answers
                if status != 200
            ]
            await asyncio.sleep(0.5)

    app = web.Application()
    add_health_routes(app, ready=lambda: "; ".join(not_ready) or None)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.ops_host, settings.ops_port).start()
    tasks.start("router-worker-probe", probe_workers())
    log.info(
        "router workers started", extra={"workers": len(workers), "ops_port": settings.ops_port}
    )

    died: int | None = None
    while not stop.is_set() and died is None:
        for worker in workers:
            code = _reap(worker.pid)
            if code is not None:
                exited[worker.pid] = code
                died = worker.index
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REAP_INTERVAL)
    if died is not None:
        log.error(
            "a router worker exited; stopping the others so the whole router restarts",
            extra={"worker": died, "code": exited[workers[died].pid]},
        )
    await tasks.stop()
    await _stop_workers([w for w in workers if w.pid not in exited], exited, settings)
    await runner.cleanup()
    await session.close()
    if died is not None:
        return exited[workers[died].pid] or 1
    return max(exited.values(), default=0)


async def _stop_workers(
    living: Sequence[Worker], exited: dict[int, int], settings: RouterSettings
) -> None:
    """SIGTERM, wait for the drain (bounded), then SIGKILL what is left."""
    for worker in living:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + settings.drain_grace + 10.0
    waiting = list(living)
    while waiting:
        for worker in list(waiting):
            code = _reap(worker.pid)
            if code is not None:
                exited[worker.pid] = code
                waiting.remove(worker)
        if waiting and time.monotonic() > deadline:
            for worker in waiting:
                log.error("router worker did not stop; killing it", extra={"worker": worker.index})
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            deadline = float("inf")  # SIGKILL cannot be ignored: reaped on the next rounds
        await asyncio.sleep(0.05)
