"""Dynos on Kubernetes: PodMetrics read from metrics.k8s.io (served by kmock), sizes as
container requests and limits (checked against the Kubernetes schemas)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kmock
import kubernetes_validate
import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from agent.dynosize import MB
from agent.dynowatch import DynoMonitor, DynoSettings
from agent.kubernetes import manifests
from agent.kubernetes.dynos import PodMetricsSource, quantity
from agent.kubernetes.runtime import KubernetesRuntime
from agent.kubernetes.settings import KubeSettings
from agent.runtime import ProcessSpec
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE
from tests.kube.controllers import pod
from tests.kube.test_chart import KUBE_VERSION

METRICS = kmock.resource("metrics.k8s.io", "v1beta1", "pods")
IMAGE = "r.example/blog@sha256:" + "a" * 64
DEFINITIONS: dict[str, Any] = {
    "blog": {
        "env": {"LOG_RUNTIME_METRICS": "1"},
        "processes": {"web": {"command": "gunicorn", "size": "standard-2x"}, "worker": {}},
    }
}


def pod_metrics(
    name: str, process: str, *, memory: str, cpu: str, at: str, uid: str | None = None
) -> dict[str, Any]:
    """A PodMetrics as metrics-server answers it: the pod's labels, a timestamp and window."""
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": uid or f"uid-{name}",
            "labels": manifests.labels("blog", process),
        },
        "timestamp": at,
        "window": "15s",
        "containers": [{"name": process, "usage": {"cpu": cpu, "memory": memory}}],
    }


def serve(apiserver: ApiServer, *items: dict[str, Any]) -> None:
    """Serve exactly ``items`` as the namespace's PodMetrics (metrics-server installed)."""
    apiserver.resources[METRICS] = kmock.ResourceInfo(kind="PodMetrics", namespaced=True)
    for key in [k for k in apiserver.objects if k[0] == METRICS]:
        del apiserver.objects[key]
    for item in items:
        apiserver.objects[METRICS, NAMESPACE, item["metadata"]["name"]] = item


def source(api: client.ApiClient) -> PodMetricsSource:
    return PodMetricsSource(api, namespace=NAMESPACE, definitions=lambda: DEFINITIONS)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1000Ki", 1024000.0), ("250m", 0.25), ("12345678n", 0.012345678), ("1Gi", 2.0**30)],
)
def test_quantities_read_as_kubernetes_writes_them(text: str, value: float) -> None:
    assert quantity(text) == pytest.approx(value)


def test_a_bad_quantity_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        quantity("12Qx")


async def test_pod_metrics_become_samples_with_the_process_size(
    apiserver: ApiServer, api: client.ApiClient
) -> None:
    serve(
        apiserver,
        pod_metrics("blog-web-5d9f-x1y2z", "web", memory="300Mi", cpu="500m",
                    at="2026-01-01T00:00:00Z"),
        pod_metrics("blog-worker-6c7-aaaaa", "worker", memory="100Mi", cpu="0",
                    at="2026-01-01T00:00:00Z"),
    )  # fmt: skip
    metrics = source(api)
    found = {t.dyno: (t, s) for t, s in await metrics.sample()}
    web, sample = found["blog-web-5d9f-x1y2z"]
    assert (web.app, web.process, web.size.name, web.runtime_metrics) == (
        "blog", "web", "standard-2x", True,
    )  # fmt: skip
    assert sample.rss == 300 * MB
    assert found["blog-worker-6c7-aaaaa"][0].size.name == "standard-1x"
    # CPU is a rate over the window: integrated into CPU seconds from one sample to the next.
    serve(
        apiserver,
        pod_metrics("blog-web-5d9f-x1y2z", "web", memory="300Mi", cpu="500m",
                    at="2026-01-01T00:00:20Z"),
    )  # fmt: skip
    [(_, later)] = await metrics.sample()
    assert later.cpu_seconds == pytest.approx(10.0)
    # The request went to the metrics API with the platform's selector.
    [*_, last] = [r for r in apiserver if r.resource == METRICS]
    assert last.params.get("labelSelector") == manifests.SELECTOR


async def test_the_monitor_counts_r14_from_pod_metrics_and_drops_a_gone_pods_series(
    apiserver: ApiServer, api: client.ApiClient
) -> None:
    registry = CollectorRegistry()
    monitor = DynoMonitor(
        source(api), sink=None, registry=registry, settings=DynoSettings(interval=0.01)
    )
    over = pod_metrics(
        "blog-worker-6c7-aaaaa", "worker", memory="600Mi", cpu="100m", at="2026-01-01T00:00:00Z"
    )
    serve(apiserver, over)
    await monitor.round(0.0)
    labels = {"app": "blog", "process": "worker", "dyno": "blog-worker-6c7-aaaaa"}
    assert registry.get_sample_value("slipway_dyno_memory_rss_bytes", labels) == 600 * MB
    assert registry.get_sample_value("slipway_dyno_memory_quota_bytes", labels) == 512 * MB
    assert (
        registry.get_sample_value("slipway_dyno_r14_total", {"app": "blog", "process": "worker"})
        == 1
    )
    assert monitor.usage("blog")["blog-worker-6c7-aaaaa"]["memory_rss"] == 600 * MB
    serve(apiserver)  # the pod is gone (asleep): its series go with it
    await monitor.round(1.0)
    assert registry.get_sample_value("slipway_dyno_memory_rss_bytes", labels) is None
    assert monitor.usage("blog") == {}


async def test_a_container_oom_killed_at_its_limit_is_an_r15(
    apiserver: ApiServer, api: client.ApiClient
) -> None:
    """The kernel kills at the memory limit, between samples: the kill is found in the pods
    KubernetesRuntime watches (the test plays the kubelet writing the container status)."""
    runtime = KubernetesRuntime(
        api,
        settings=KubeSettings(namespace=NAMESPACE, watch_timeout=30),
        registry=CollectorRegistry(),
    )
    registry = CollectorRegistry()
    metrics = PodMetricsSource(
        api,
        namespace=NAMESPACE,
        definitions=lambda: DEFINITIONS,
        pods=lambda: list(runtime.cache.pods.by_name.values()),
    )
    sink = _Lines()
    monitor = DynoMonitor(metrics, sink=sink, registry=registry)
    serve(apiserver)
    r15 = {"app": "blog", "process": "web"}

    async def drain() -> None:  # the runtime watches while someone follows its statuses
        async for _ in runtime.watch():
            pass

    follower = asyncio.create_task(drain())
    try:
        running = pod("blog", "web", 1, ip="10.0.0.5")
        running["status"]["containerStatuses"] = [{"name": "web", "ready": True, "restartCount": 0}]
        await apiserver.put("pods", running)
        await _seen(runtime, "blog-web-1", 0)
        await monitor.round(0.0)
        # An agent that starts beside a pod killed before counts only kills from then on.
        assert registry.get_sample_value("slipway_dyno_r15_total", r15) is None
        killed = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
        running["status"]["containerStatuses"] = [
            {"name": "web", "ready": True, "restartCount": 1, "lastState": killed}
        ]
        await apiserver.put("pods", running)
        await _seen(runtime, "blog-web-1", 1)
        await monitor.round(1.0)
        assert registry.get_sample_value("slipway_dyno_r15_total", r15) == 1
        assert sink.lines == [
            ("blog-web-1", "Error R15 (Memory quota vastly exceeded)"),
            ("blog-web-1", "Process killed at its memory limit of 2048M (OOMKilled)"),
        ]
        await monitor.round(2.0)  # the same kill is not counted twice
        assert registry.get_sample_value("slipway_dyno_r15_total", r15) == 1
    finally:
        await runtime.close()
        follower.cancel()


class _Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        assert (app, source) == ("blog", "dyno")
        self.lines.append((process, text))


async def _seen(runtime: KubernetesRuntime, name: str, restarts: int) -> None:
    """Until the runtime's pod watch has the pod with ``restarts``."""
    async with asyncio.timeout(5):
        while True:
            found = runtime.cache.pods.by_name.get(name)
            statuses = ((found or {}).get("status") or {}).get("containerStatuses") or []
            if statuses and statuses[0].get("restartCount") == restarts:
                return
            await asyncio.sleep(0.01)


async def test_a_metrics_api_that_is_not_installed_fails_a_round_not_the_monitor(
    apiserver: ApiServer, api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """No metrics-server: the list is a 404; the round is skipped (said once, not every
    round) and the next one tries; once installed, samples come."""
    registry = CollectorRegistry()
    monitor = DynoMonitor(source(api), sink=None, registry=registry)
    caplog.set_level(logging.INFO, logger="agent.dynowatch")
    for now in (0.0, 1.0, 2.0):
        await monitor.round(now)
    assert monitor.tracked == {}
    said = [r.getMessage() for r in caplog.records]
    assert said == ["dyno samples failed; retrying every interval"]
    serve(
        apiserver,
        pod_metrics("blog-web-1", "web", memory="10Mi", cpu="1m", at="2026-01-01T00:00:00Z"),
    )
    await monitor.round(3.0)
    assert list(monitor.usage("blog")) == ["blog-web-1"]
    assert [r.getMessage() for r in caplog.records][-1] == "dyno samples back"


@pytest.mark.parametrize(
    ("size", "requests", "limits"),
    [
        (None, {"cpu": "250m", "memory": "512Mi"}, {"cpu": "1000m", "memory": "1024Mi"}),
        ("standard-2x", {"cpu": "500m", "memory": "1024Mi"}, {"cpu": "2000m", "memory": "2048Mi"}),
        (
            "performance-m",
            {"cpu": "2000m", "memory": "2560Mi"},
            {"cpu": "2000m", "memory": "5120Mi"},
        ),
        ("768MB,2cpu", {"cpu": "500m", "memory": "768Mi"}, {"cpu": "2000m", "memory": "1536Mi"}),
    ],
)
def test_a_size_becomes_requests_and_limits_in_valid_manifests(
    size: str | None, requests: dict[str, str], limits: dict[str, str]
) -> None:
    spec = ProcessSpec("blog", "web", "gunicorn", image=IMAGE, release=3, size=size)
    deployment = manifests.deployment(spec, port=5000, replicas=1)
    job = manifests.once_job(spec, "rake db:migrate", name="blog-run-v3-abcdef", timeout=60)
    for body, pod_spec in (
        (deployment, deployment["spec"]["template"]["spec"]),
        (job, job["spec"]["template"]["spec"]),
    ):
        kubernetes_validate.validate(body, KUBE_VERSION, strict=True)
        [container] = pod_spec["containers"]
        assert container["resources"] == {"requests": requests, "limits": limits}


def test_a_new_size_changes_the_applied_hash_so_the_pods_roll() -> None:
    small = ProcessSpec("blog", "web", "gunicorn", image=IMAGE, release=3)
    large = ProcessSpec("blog", "web", "gunicorn", image=IMAGE, release=3, size="standard-2x")
    hashes = {
        manifests.deployment(s, port=5000, replicas=None)["metadata"]["annotations"][
            manifests.APPLIED_ANNOTATION
        ]
        for s in (small, large)
    }
    assert len(hashes) == 2


async def test_a_stopped_monitor_exports_no_series(
    apiserver: ApiServer, api: client.ApiClient
) -> None:
    """A replica that loses the lead stops its agent: its last samples must not linger on
    its /metrics beside the new leader's."""
    registry = CollectorRegistry()
    monitor = DynoMonitor(
        source(api), sink=None, registry=registry, settings=DynoSettings(interval=0.01)
    )
    serve(
        apiserver,
        pod_metrics("blog-web-1", "web", memory="10Mi", cpu="1m", at="2026-01-01T00:00:00Z"),
    )
    labels = {"app": "blog", "process": "web", "dyno": "blog-web-1"}
    task = asyncio.create_task(monitor.run())
    async with asyncio.timeout(5):
        while registry.get_sample_value("slipway_dyno_memory_rss_bytes", labels) is None:
            await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert registry.get_sample_value("slipway_dyno_memory_rss_bytes", labels) is None
