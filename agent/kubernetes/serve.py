"""``slipway serve agent --runtime kubernetes``: one agent replica of several.

Every replica watches the cluster (so its readiness says whether the
apiserver is reachable, and a new leader starts from a warm view) and serves
the API; only the elected one runs the Agent's decisions. Until it leads, a
replica forwards ``/v1/`` to the leader's URL from the Lease. When elected it
learns every app from the labelled Deployments' definition annotations, then
starts deciding. When it loses the Lease it exits (non-zero), as client-go's
leader election does: a replica that has stopped leading may hold decisions
in flight, and a fresh follower is the simplest safe state to return to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.api import api_app
from agent.apps import AppConfig
from agent.definition import definition_json, parse_definition
from agent.dynowatch import DynoMonitor, DynoSettings
from agent.errors import ConfigError
from agent.kubernetes.dynos import PodMetricsSource
from agent.kubernetes.lease import Elector
from agent.kubernetes.runtime import KubernetesRuntime
from agent.kubernetes.stack import kubernetes_stack
from agent.settings import AgentSettings
from kit.logpost import PlatformLogSink
from kit.tasks import TaskSet

log = logging.getLogger(__name__)


async def learn(agent: Agent, kube: KubernetesRuntime) -> int:
    """Define every app whose Deployments carry a definition; returns how many.

    Apps the agent already has (from the apps file) keep that definition.
    """
    await asyncio.gather(*(w.synced.wait() for w in kube.watches))
    learned = 0
    for name, data in sorted(kube.definitions().items()):
        if name in agent.machines:
            continue
        try:
            config = parse_definition(name, data)
            await agent.define(config)
        except ConfigError as exc:
            log.error(
                "unusable app definition on the cluster",
                extra={"app": name, "error": str(exc)},
            )
            continue
        learned += 1
    return learned


class ElectedLeadership:
    """The forwarder's view of the Lease: lead when we hold it and the agent has started."""

    def __init__(self, elector: Elector, agent: Agent) -> None:
        self._elector = elector
        self._agent = agent

    @property
    def me(self) -> str:
        return self._elector.me

    def leading(self) -> str | bool:
        if not self._elector.is_leader():
            return False
        if not self._agent.started:
            return "this replica was just elected and is still learning the apps"
        return True

    def leader_url(self) -> str | None:
        return self._elector.leader_url

    def refresh(self) -> None:
        self._elector.poke()


def advertised_url(explicit: str | None, environ: Mapping[str, str], port: int) -> str | None:
    """This replica's API URL for the Lease: the flag, else ``http://$POD_IP:port``."""
    if explicit:
        return explicit.rstrip("/")
    ip = environ.get("POD_IP")
    if not ip:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}"


async def serve_kubernetes(
    settings: AgentSettings,
    apps: list[AppConfig],
    environ: Mapping[str, str],
    tasks: TaskSet,
    stop: asyncio.Event,
    *,
    advertise: str | None = None,
    kubeconfig: str | None = None,
    clock: Callable[[], float] = time.time,
    dynos: DynoSettings | None = None,
) -> int:
    registry = CollectorRegistry()
    changed = asyncio.Event()
    url = advertised_url(advertise, environ, settings.port)
    if url is None:
        log.warning("no URL to advertise (set POD_IP); followers cannot forward to this replica")
    async with kubernetes_stack(
        environ,
        registry=registry,
        kubeconfig=kubeconfig,
        clock=clock,
        advertise=url,
        on_change=lambda _: changed.set(),
        tasks=tasks,
    ) as kube:
        # Sizes and LOG_RUNTIME_METRICS from the agent's own definitions (env included).
        metrics = PodMetricsSource(
            kube.api,
            namespace=kube.settings.namespace,
            definitions=lambda: {n: definition_json(m.config) for n, m in agent.machines.items()},
            pods=lambda: list(kube.runtime.cache.pods.by_name.values()),
        )
        # The pods' own lines reach the logs service through Fluent Bit; the monitor's
        # R14/R15 lines are the platform's, posted to it (else only this agent's log).
        sink = None
        if settings.logs_url is not None:
            sink = PlatformLogSink(
                settings.logs_url, token=settings.token, registry=registry, component="agent"
            )
            tasks.start("platform-lines", sink.run())
        monitor = DynoMonitor(metrics, sink=sink, registry=registry, settings=dynos)
        agent = Agent(
            apps,
            runtime=kube.runtime,
            registry=registry,
            settings=settings,
            tasks=tasks,
            dynos=monitor,
        )

        def ready() -> str | None:
            if tasks.failed.is_set():
                return f"background task {tasks.failed_task} failed"
            problem = kube.runtime.ready()
            if problem is not None:
                return f"the view of the cluster may be stale: {problem}"
            if kube.elector.is_leader() and not agent.started:
                return "elected, starting"
            return None

        app = api_app(
            agent, registry=registry, leadership=ElectedLeadership(kube.elector, agent), ready=ready
        )
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, settings.host, settings.port).start()
            except OSError as exc:
                log.error("cannot listen", extra={"port": settings.port, "error": str(exc)})
                return 1
            log.info(
                "agent listening",
                extra={"port": settings.port, "identity": kube.elector.me, "url": url},
            )
            kube.runtime.start()
            return await _lead_when_elected(agent, kube.runtime, kube.elector, changed, stop)
        finally:
            await agent.stop()
            await runner.cleanup()


async def _lead_when_elected(
    agent: Agent,
    runtime: KubernetesRuntime,
    elector: Elector,
    changed: asyncio.Event,
    stop: asyncio.Event,
) -> int:
    """Until ``stop`` (a signal, or a failed task: the runner sets it and exits 1), start
    deciding when elected and exit when the Lease is lost."""
    while True:
        waits = [asyncio.ensure_future(e.wait()) for e in (stop, changed)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if stop.is_set():
            return 0
        changed.clear()
        leader = elector.is_leader()
        if leader and not agent.started:
            # Learning waits for the watches to sync: never past a stop.
            starting = asyncio.ensure_future(_start(agent, runtime, elector))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                return 0
            try:
                starting.result()
            except Exception as exc:
                log.error("could not start leading", extra={"error": repr(exc)})
                return 1
        elif not leader and agent.started:
            log.error(
                "lost the lease: exiting to come back as a follower",
                extra={"identity": elector.me},
            )
            return 1


async def _start(agent: Agent, kube: KubernetesRuntime, elector: Elector) -> None:
    learned = await learn(agent, kube)
    log.info(
        "elected: starting to decide",
        extra={"identity": elector.me, "apps_learned": learned},
    )
    await agent.start()
