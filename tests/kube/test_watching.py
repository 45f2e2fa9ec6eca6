"""The runtime's view survives dropped connections, compaction (410), timeouts and outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from agent.kubernetes.runtime import KubernetesRuntime
from agent.runtime import ProcessStatus
from tests.helpers import eventually
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE
from tests.kube.controllers import endpoint_slice, pod
from tests.kube.test_runtime import SPEC, next_status, settings, status_until


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def runtime(
    api: client.ApiClient, registry: CollectorRegistry
) -> AsyncIterator[KubernetesRuntime]:
    rt = KubernetesRuntime(api, settings=settings(watch_timeout=1), registry=registry)
    yield rt
    await rt.close()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def started(runtime: KubernetesRuntime) -> AsyncIterator[ProcessStatus]:
    await runtime.apply(SPEC)
    statuses = runtime.watch()
    first = await next_status(statuses)
    assert (first.app, first.process, first.desired) == ("blog", "web", 0)
    return statuses


async def test_a_dropped_watch_resumes_from_the_last_resource_version_without_a_relist(
    runtime: KubernetesRuntime, apiserver: ApiServer, registry: CollectorRegistry
) -> None:
    statuses = await started(runtime)
    before = len(apiserver.watch_requests)
    await apiserver.drop_watches()
    # A change made while the connection is down arrives once the watch resumes.
    await apiserver.put("pods", pod("blog", "web", 1, ip="10.1.0.9"))
    status = await next_status(statuses)
    assert status.instances[0].host == "10.1.0.9"
    resumed = apiserver.watch_requests[before:]
    assert resumed  # the pods watch came back: it delivered the change above
    assert all(r.get("resourceVersion") for r in resumed)
    assert sample(registry, "slipway_agent_kube_relists_total", resource="pods") == 1
    await statuses.aclose()  # type: ignore[attr-defined]


async def test_a_compacted_resource_version_gets_410_and_a_relist_that_replaces_the_view(
    runtime: KubernetesRuntime, apiserver: ApiServer, registry: CollectorRegistry
) -> None:
    await apiserver.put("pods", pod("blog", "web", 1, ip="10.1.0.1"))
    statuses = await started(runtime)
    # While the agent is cut off, the pod goes away and history is compacted past it.
    runtime_outage = apiserver.drop_watches()
    apiserver.outage = True
    await runtime_outage
    await apiserver.delete_object("pods", NAMESPACE, "blog-web-1")
    await apiserver.put("pods", pod("blog", "web", 2, ip="10.1.0.2"))
    apiserver.compact()
    apiserver.outage = False
    status = await status_until(statuses, lambda s: [i.name for i in s.instances] == ["blog-web-2"])
    assert status.instances[0].host == "10.1.0.2"
    assert sample(registry, "slipway_agent_kube_relists_total", resource="pods") == 2
    assert (
        sample(registry, "slipway_agent_kube_watch_events_total", resource="pods", type="error")
        >= 1
    )
    await statuses.aclose()  # type: ignore[attr-defined]


async def test_an_apiserver_outage_turns_readiness_off_and_is_counted_until_it_ends(
    runtime: KubernetesRuntime, apiserver: ApiServer, registry: CollectorRegistry
) -> None:
    statuses = await started(runtime)
    assert runtime.ready() is None
    apiserver.outage = True
    await apiserver.drop_watches()
    await eventually(lambda: all(w.problem for w in runtime.watches))
    reason = runtime.ready()
    assert reason is not None
    assert "503" in reason
    assert sample(registry, "slipway_agent_kube_watch_failures_total", resource="deployments") >= 1
    assert sample(registry, "slipway_agent_kube_watch_healthy", resource="deployments") == 0
    apiserver.outage = False
    await eventually(lambda: runtime.ready() is None)
    assert sample(registry, "slipway_agent_kube_watch_healthy", resource="deployments") == 1
    # And the view is live again.
    await apiserver.put(
        "endpointslices", endpoint_slice("blog", "web", [("p", "10.0.0.3", True)], port=5000)
    )
    status = await next_status(statuses)
    assert [(i.host, i.port) for i in status.ready] == [("10.0.0.3", 5000)]
    await statuses.aclose()  # type: ignore[attr-defined]


async def test_watches_ask_for_bookmarks_and_timeouts_and_bookmarks_keep_the_version_fresh(
    runtime: KubernetesRuntime, apiserver: ApiServer, registry: CollectorRegistry
) -> None:
    statuses = await started(runtime)
    pods = runtime.watches[1]
    before = int(pods.resource_version or 0)
    # Only deployments change; the pods watch learns the newer version from a bookmark.
    await runtime.scale("blog", "web", 1)
    await next_status(statuses)
    await eventually(lambda: int(pods.resource_version or 0) > before)
    assert (
        sample(registry, "slipway_agent_kube_watch_events_total", resource="pods", type="bookmark")
        >= 1
    )
    first = apiserver.watch_requests[0]
    assert first["allowWatchBookmarks"].lower() == "true"
    assert first["timeoutSeconds"] == "1"
    assert first["labelSelector"] == "slipway.dev/app"
    await statuses.aclose()  # type: ignore[attr-defined]


async def test_a_watch_the_apiserver_ends_at_its_timeout_is_resumed_not_relisted(
    runtime: KubernetesRuntime, apiserver: ApiServer, registry: CollectorRegistry
) -> None:
    statuses = await started(runtime)
    count = len(apiserver.watch_requests)
    await eventually(lambda: len(apiserver.watch_requests) >= count + 3)  # 1 s watches
    later = apiserver.watch_requests[count:]
    assert all(r.get("resourceVersion") for r in later)
    assert sample(registry, "slipway_agent_kube_relists_total", resource="deployments") == 1
    await statuses.aclose()  # type: ignore[attr-defined]


async def test_a_watch_that_dies_of_a_bug_sets_failed_and_readiness_says_so(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    statuses = await started(runtime)

    def broken(kind: str, obj: dict) -> None:  # type: ignore[type-arg]
        raise RuntimeError("a bug in event handling")

    runtime.watches[1]._on_event = broken
    await apiserver.put("pods", pod("blog", "web", 1, ip="10.1.0.9"))
    async with asyncio.timeout(5):
        await runtime.failed.wait()
    reason = runtime.ready()
    assert reason is not None
    assert "a bug in event handling" in reason
    await statuses.aclose()  # type: ignore[attr-defined]
