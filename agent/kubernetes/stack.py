"""Everything the agent's entry point needs for Kubernetes, in one context manager.

``slipway serve agent`` with the Kubernetes runtime is::

    async with kubernetes_stack(os.environ, registry=registry) as kube:
        agent = Agent(apps, runtime=kube.runtime, ...)
        # readiness: kube.runtime.ready(); leadership: kube.elector.is_leader()

It builds the client (service account or kubeconfig), the Lease elector
(running as a named task) and the runtime gated on leadership; on exit it
hands the Lease over at once so the next leader does not wait it out.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry, Gauge

from agent.kubernetes.lease import Elector
from agent.kubernetes.runtime import KubernetesRuntime
from agent.kubernetes.settings import KubeSettings, from_env
from kit.kube import api_client
from kit.tasks import TaskSet


@dataclass(frozen=True)
class KubeStack:
    settings: KubeSettings
    runtime: KubernetesRuntime
    elector: Elector
    tasks: TaskSet
    #: The client every part shares (the dyno monitor's PodMetrics reads too).
    api: client.ApiClient


@contextlib.asynccontextmanager
async def kubernetes_stack(
    environ: Mapping[str, str],
    *,
    registry: CollectorRegistry,
    kubeconfig: str | None = None,
    clock: Callable[[], float] = time.time,
    advertise: str | None = None,
    on_change: Callable[[bool], None] | None = None,
    tasks: TaskSet | None = None,
) -> AsyncIterator[KubeStack]:
    """``advertise``: this replica's API URL, written into the Lease while it leads, so
    followers forward to it; ``on_change(leading)`` is called when leadership changes;
    ``tasks``: the process's task set, where the election and the watches run."""
    settings = from_env(environ)
    api = await api_client(kubeconfig)
    try:
        elector = Elector(
            api, settings=settings, clock=clock, on_change=on_change, advertise=advertise
        )
        runtime = KubernetesRuntime(
            api, settings=settings, registry=registry, is_leader=elector.is_leader, tasks=tasks
        )
        # Summed over the replicas, 0 means no one scales or wakes anything: an alert.
        Gauge(
            "slipway_agent_leader",
            "1 while this agent replica holds the leader Lease.",
            registry=registry,
        ).set_function(lambda: 1.0 if elector.is_leader() else 0.0)
        own = TaskSet.of(tasks)
        own.start("kube-lease", elector.run())
        try:
            yield KubeStack(settings, runtime, elector, own, api)
        finally:
            await own.stop()
            await elector.release()
            await runtime.close()
    finally:
        await api.close()
