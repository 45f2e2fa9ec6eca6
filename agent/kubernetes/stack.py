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

from prometheus_client import CollectorRegistry

from agent.kubernetes.connect import api_client
from agent.kubernetes.lease import Elector
from agent.kubernetes.runtime import KubernetesRuntime
from agent.kubernetes.settings import KubeSettings, from_env
from control.kit.tasks import TaskSet


@dataclass(frozen=True)
class KubeStack:
    settings: KubeSettings
    runtime: KubernetesRuntime
    elector: Elector
    tasks: TaskSet


@contextlib.asynccontextmanager
async def kubernetes_stack(
    environ: Mapping[str, str],
    *,
    registry: CollectorRegistry,
    kubeconfig: str | None = None,
    clock: Callable[[], float] = time.time,
    advertise: str | None = None,
    on_change: Callable[[bool], None] | None = None,
) -> AsyncIterator[KubeStack]:
    """``advertise``: this replica's API URL, written into the Lease while it leads, so
    followers forward to it; ``on_change(leading)`` is called when leadership changes."""
    settings = from_env(environ)
    api = await api_client(kubeconfig)
    try:
        elector = Elector(
            api, settings=settings, clock=clock, on_change=on_change, advertise=advertise
        )
        runtime = KubernetesRuntime(
            api, settings=settings, registry=registry, is_leader=elector.is_leader
        )
        tasks = TaskSet()
        tasks.start("kube-lease", elector.run())
        try:
            yield KubeStack(settings, runtime, elector, tasks)
        finally:
            await tasks.stop()
            await elector.release()
            await runtime.close()
    finally:
        await api.close()
