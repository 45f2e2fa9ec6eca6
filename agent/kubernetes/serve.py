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
from agent.apps import WEB, AppConfig
from agent.definition import parse_definition
from agent.errors import ConfigError
from agent.kubernetes.errors import KubeError
from agent.kubernetes.lease import Elector
from agent.kubernetes.runtime import KubernetesRuntime
from agent.kubernetes.stack import kubernetes_stack
from agent.machine import AppMachine
from agent.settings import AgentSettings

log = logging.getLogger(__name__)


class KubeAgent(Agent):
    """The Agent, telling the runtime each app's definition before its specs are applied, so
    the Deployments carry it for the next leader."""

    def __init__(
        self,
        apps: list[AppConfig],
        *,
        runtime: KubernetesRuntime,
        registry: CollectorRegistry,
        settings: AgentSettings,
    ) -> None:
        super().__init__(apps, runtime=runtime, registry=registry, settings=settings)
        self.kube = runtime

    async def start(self) -> None:
        for machine in self.machines.values():
            self.kube.describe(machine.config)
        await super().start()
        self._tasks.start("agent-persist-activity", self._persist_activity())

    async def _restart_type(self, machine: AppMachine, process: str) -> None:
        """A rolling restart of the Deployment: not delete and create, which would take every
        pod away at once and the release's config with the app's last Deployment."""
        await self.kube.restart(machine.name, process, time.time())

    def _active_since(self, machine: AppMachine, now: float) -> float | None:
        """The persisted last activity, but never so old that the app sleeps before routers
        had ``router_ttl`` to report: a new leader knows no router yet."""
        wall = self.kube.last_activity(machine.name)
        if wall is None:
            return None
        at = now - max(0.0, time.time() - wall)
        return max(at, now - machine.config.policy.idle_after + self.settings.router_ttl)

    async def _persist_activity(self) -> None:
        """Write each used app's last activity on its web Deployment, for the next leader."""
        loop = asyncio.get_running_loop()
        written: dict[str, float] = {}
        while True:
            await asyncio.sleep(self.kube.settings.activity_interval)
            for name, machine in list(self.machines.items()):
                last = self.reports.seen(name).last_seen
                if last is None or WEB not in machine.config.processes:
                    continue
                if last <= written.get(name, float("-inf")):
                    continue
                wall = time.time() - (loop.time() - last)
                try:
                    await self.kube.record_activity(name, WEB, wall)
                except KubeError as exc:
                    log.warning(
                        "could not persist activity", extra={"app": name, "error": str(exc)}
                    )
                    continue
                written[name] = last

    async def define(self, config: AppConfig) -> None:
        for process, spec in sorted(config.processes.items()):
            if not spec.image:
                raise ConfigError(
                    f"app {config.name!r} process {process!r}: an image is required on Kubernetes"
                )
        previous = self.machines.get(config.name)
        self.kube.describe(config)
        try:
            await super().define(config)
        except ConfigError:
            if previous is not None:
                self.kube.describe(previous.config)
            raise

    async def learn(self) -> int:
        """Define every app whose Deployments carry a definition; returns how many.

        Apps the agent already has (from the apps file) keep that definition.
        """
        await asyncio.gather(*(w.synced.wait() for w in self.kube.watches))
        learned = 0
        for name, data in sorted(self.kube.definitions().items()):
            if name in self.machines:
                continue
            try:
                config = parse_definition(name, data)
                await self.define(config)
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
    stop: asyncio.Event,
    *,
    advertise: str | None = None,
    kubeconfig: str | None = None,
    clock: Callable[[], float] = time.time,
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
    ) as kube:
        agent = KubeAgent(apps, runtime=kube.runtime, registry=registry, settings=settings)

        def ready() -> str | None:
            for failed, what in (
                (kube.tasks.failed, "the leader election task failed"),
                (agent.failed, "a background task failed"),
            ):
                if failed.is_set():
                    return what
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
            return await _lead_when_elected(
                agent, kube.elector, changed, stop, (kube.tasks.failed, kube.runtime.failed)
            )
        finally:
            await agent.stop()
            await runner.cleanup()


async def _lead_when_elected(
    agent: KubeAgent,
    elector: Elector,
    changed: asyncio.Event,
    stop: asyncio.Event,
    failures: tuple[asyncio.Event, ...],
) -> int:
    failures = (agent.failed, *failures)
    events = (stop, changed, *failures)
    while True:
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if stop.is_set():
            return 0
        if any(f.is_set() for f in failures):
            return 1
        changed.clear()
        leader = elector.is_leader()
        if leader and not agent.started:
            # Learning waits for the watches to sync: never past a stop.
            starting = asyncio.ensure_future(_start(agent, elector))
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


async def _start(agent: KubeAgent, elector: Elector) -> None:
    learned = await agent.learn()
    log.info(
        "elected: starting to decide",
        extra={"identity": elector.me, "apps_learned": learned},
    )
    await agent.start()
