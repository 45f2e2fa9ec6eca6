"""Autoscaling through KubernetesRuntime: routers' reports of requests in flight move the
Deployment's replicas up at once (panic) and back down one at a time after the delay, against
kmock over HTTP with the test playing the controllers."""

from __future__ import annotations

import asyncio

from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.apps import AppConfig
from agent.autoscale import Autoscale
from agent.kubernetes.runtime import KubernetesRuntime
from agent.policy import Policy
from agent.settings import AgentSettings
from tests.kube.apiserver import ApiServer
from tests.kube.controllers import endpoint_slice, pod, replicas_become
from tests.kube.test_runtime import SPEC, settings

BLOG = AppConfig(
    name="blog",
    hosts=("blog.apps.test",),
    processes={"web": SPEC},
    policy=Policy(min_scale=1, max_scale=3),
    autoscale={"web": Autoscale(target=2, stable_window=2, panic_window=0.5, scale_down_delay=0.5)},
)


def report(agent: Agent, in_flight: int, version: int) -> None:
    agent.report(
        {
            "router": "router-0",
            "version": version,
            "apps": {"blog": {"requests": 1, "in_flight": in_flight, "idle_for": 0.0}},
        }
    )


async def test_reports_of_load_scale_the_deployment_up_and_down_one_step_a_delay(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    runtime = KubernetesRuntime(api, settings=settings(), registry=CollectorRegistry())
    agent = Agent(
        [BLOG],
        runtime=runtime,
        registry=CollectorRegistry(),
        settings=AgentSettings(tick=0.01, autoscale_interval=0.1),
    )
    await agent.start()
    try:
        await replicas_become(apiserver, "blog-web", 1)  # min_scale 1: awake at once
        await apiserver.put("pods", pod("blog", "web", 1, ip="10.1.0.7"))
        await apiserver.put(
            "endpointslices",
            endpoint_slice("blog", "web", [("blog-web-1", "10.1.0.7", True)], port=5000),
        )
        async with asyncio.timeout(5):
            while agent.states()["blog"]["state"] != "awake":
                await asyncio.sleep(0.01)

        async def load(in_flight: int, until: int) -> None:
            async with asyncio.timeout(10):
                while agent.machines["blog"].desired["web"] != until:
                    report(agent, in_flight, agent.version)
                    await asyncio.sleep(0.05)

        await load(9, until=3)  # 9 in flight at 2 each: five wanted, three allowed
        await replicas_become(apiserver, "blog-web", 3)
        await load(0, until=2)
        await replicas_become(apiserver, "blog-web", 2)
        await load(0, until=1)
        await replicas_become(apiserver, "blog-web", 1)
    finally:
        await agent.stop()
    decisions = agent.autoscale("blog")["decisions"]
    moves = [(d["from"], d["to"], d["reason"]) for d in reversed(decisions) if d["from"] != d["to"]]
    assert moves[-2:] == [(3, 2, "idle"), (2, 1, "idle")]
    assert moves[0][2] in ("panic", "load")
    assert max(to for _, to, _ in moves) == 3
