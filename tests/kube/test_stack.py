"""The wiring an agent entry point uses: client from a kubeconfig, elector running, hand-over."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.kubernetes.stack import kubernetes_stack
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE
from tests.kube.test_runtime import SPEC


async def test_the_stack_leads_scales_and_releases_the_lease_on_exit(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: t, cluster: {{server: "{str(apiserver.url).rstrip("/")}"}}}}]
users: [{{name: t, user: {{token: t}}}}]
contexts: [{{name: t, context: {{cluster: t, user: t}}}}]
current-context: t
"""
    )
    env = {
        "SLIPWAY_KUBE_NAMESPACE": NAMESPACE,
        "SLIPWAY_KUBE_IDENTITY": "agent-0",
        "SLIPWAY_KUBE_LEASE_NAMESPACE": "slipway",
        "SLIPWAY_KUBE_LEASE_NAME": "slipway-agent",
    }
    registry = CollectorRegistry()
    async with kubernetes_stack(env, registry=registry, kubeconfig=str(kubeconfig)) as kube:
        assert registry.get_sample_value("slipway_agent_leader") == 0.0
        async with asyncio.timeout(5):
            while not kube.elector.is_leader():
                await asyncio.sleep(0.01)
        # What the chart's "no agent leader" alert sums over the replicas.
        assert registry.get_sample_value("slipway_agent_leader") == 1.0
        assert kube.tasks.names() == ["kube-lease"]
        await kube.runtime.apply(SPEC)
        await kube.runtime.scale("blog", "web", 1)
        lease = apiserver.get("leases", "slipway", "slipway-agent")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "agent-0"
    deployment = apiserver.get("deployments", NAMESPACE, "blog-web")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    lease = apiserver.get("leases", "slipway", "slipway-agent")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] is None  # handed over on the way out
