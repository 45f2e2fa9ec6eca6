"""How an app's pod stops on Kubernetes: a web pod keeps serving through a preStop sleep while
its endpoint leaves the routers, then has the whole stop grace after SIGTERM.

What only a real cluster shows (the kubelet running the hook, the endpoint controller's
timing) is in docs/kubernetes.md; here the manifests, their schemas and what the runtime
sends are checked.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from agent.kubernetes import manifests
from agent.kubernetes.runtime import KubernetesRuntime
from agent.kubernetes.settings import from_env
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE
from tests.kube.test_chart import KUBE_VERSION
from tests.kube.test_runtime import SPEC, settings
from tests.kube.test_tenant_pods import WORKER


def pod_of(deployment: dict[str, Any] | None) -> dict[str, Any]:
    assert deployment is not None
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def test_a_web_pod_sleeps_before_sigterm_and_its_grace_covers_the_sleep_and_the_app() -> None:
    dep = manifests.deployment(SPEC, port=5000, replicas=1, drain=7, stop_grace=30)
    pod = pod_of(dep)
    assert pod["containers"][0]["lifecycle"] == {"preStop": {"sleep": {"seconds": 7}}}
    # The kubelet counts the hook inside the period: the app keeps its 30 s after SIGTERM.
    assert pod["terminationGracePeriodSeconds"] == 37
    kubernetes_validate.validate(dep, KUBE_VERSION, strict=True)


def test_the_defaults_give_web_a_drain_and_heroku_s_thirty_seconds() -> None:
    pod = pod_of(manifests.deployment(SPEC, port=5000, replicas=1))
    assert pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == (
        manifests.DRAIN_SECONDS
    )
    assert pod["terminationGracePeriodSeconds"] == (
        manifests.DRAIN_SECONDS + manifests.STOP_GRACE_SECONDS
    )


def test_a_worker_has_no_endpoint_to_withdraw_so_no_hook_and_just_the_grace() -> None:
    dep = manifests.deployment(WORKER, port=5000, replicas=1, drain=7, stop_grace=20)
    pod = pod_of(dep)
    assert "lifecycle" not in pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] == 20
    kubernetes_validate.validate(dep, KUBE_VERSION, strict=True)


def test_a_zero_drain_turns_the_hook_off() -> None:
    dep = manifests.deployment(SPEC, port=5000, replicas=1, drain=0, stop_grace=30)
    assert "lifecycle" not in pod_of(dep)["containers"][0]
    assert pod_of(dep)["terminationGracePeriodSeconds"] == 30
    kubernetes_validate.validate(dep, KUBE_VERSION, strict=True)


def test_a_negative_drain_is_refused() -> None:
    with pytest.raises(ValueError, match="drain and grace must be >= 0"):
        manifests.deployment(SPEC, port=5000, replicas=1, drain=-1)


def test_the_settings_read_the_drain_and_grace_and_refuse_a_negative_one() -> None:
    got = from_env({"SLIPWAY_KUBE_APP_DRAIN_SECONDS": "9", "SLIPWAY_KUBE_APP_STOP_GRACE": "12"})
    assert (got.app_drain_seconds, got.app_stop_grace) == (9, 12)
    with pytest.raises(ValueError, match="SLIPWAY_KUBE_APP_DRAIN_SECONDS must be 0 or more"):
        from_env({"SLIPWAY_KUBE_APP_DRAIN_SECONDS": "-3"})
    with pytest.raises(ValueError, match="SLIPWAY_KUBE_APP_STOP_GRACE: not a number"):
        from_env({"SLIPWAY_KUBE_APP_STOP_GRACE": "soon"})


async def test_the_runtime_applies_its_settings_and_a_changed_drain_is_reapplied(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    rt = KubernetesRuntime(
        api, settings=settings(app_drain_seconds=8, app_stop_grace=25), registry=CollectorRegistry()
    )
    try:
        await rt.apply(SPEC)
        pod = pod_of(apiserver.get("deployments", NAMESPACE, "blog-web"))
        assert pod["containers"][0]["lifecycle"] == {"preStop": {"sleep": {"seconds": 8}}}
        assert pod["terminationGracePeriodSeconds"] == 33
    finally:
        await rt.close()
    # A new agent with another drain patches the Deployment it finds.
    rt = KubernetesRuntime(
        api, settings=settings(app_drain_seconds=3, app_stop_grace=25), registry=CollectorRegistry()
    )
    try:
        await rt.apply(SPEC)
        pod = pod_of(apiserver.get("deployments", NAMESPACE, "blog-web"))
        assert pod["containers"][0]["lifecycle"] == {"preStop": {"sleep": {"seconds": 3}}}
        assert pod["terminationGracePeriodSeconds"] == 28
    finally:
        await rt.close()
