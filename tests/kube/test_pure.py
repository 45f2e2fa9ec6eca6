"""The pure parts: settings from the environment, status from objects, manifests, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from agent.kubernetes import manifests
from agent.kubernetes.errors import (
    ApiUnavailable,
    Conflict,
    Gone,
    NotFound,
    Rejected,
    from_status,
    translated,
)
from agent.kubernetes.settings import KubeSettings, from_env
from agent.kubernetes.status import Cache, status_of
from agent.runtime import Instance
from kit.kube import api_client
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE
from tests.kube.controllers import endpoint_slice, pod

# -- settings -------------------------------------------------------------------------------------


def test_settings_come_from_slipway_kube_variables_and_flags_win() -> None:
    env = {
        "SLIPWAY_KUBE_NAMESPACE": "apps",
        "SLIPWAY_KUBE_IDENTITY": "agent-7f9",
        "SLIPWAY_KUBE_LEASE_DURATION": "20s",
        "SLIPWAY_KUBE_APP_PORT": "8080",
        "SLIPWAY_KUBE_LEASE_NAMESPACE": "",
    }
    s = from_env(env, namespace="override", watch_timeout=None)
    assert s == KubeSettings(
        namespace="override", identity="agent-7f9", lease_duration=20.0, app_port=8080
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLIPWAY_KUBE_LEASE_DURATION": "soon"}, "SLIPWAY_KUBE_LEASE_DURATION: not a duration"),
        ({"SLIPWAY_KUBE_APP_PORT": "http"}, "SLIPWAY_KUBE_APP_PORT: not a number: 'http'"),
    ],
)
def test_a_bad_variable_is_refused_naming_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_env(env)


# -- status ---------------------------------------------------------------------------------------


def cache_with(*, pods: list[dict], slices: list[dict], replicas: int = 1) -> Cache:  # type: ignore[type-arg]
    cache = Cache()
    dep = {
        "metadata": {
            "name": "blog-web",
            "labels": {"slipway.dev/app": "blog", "slipway.dev/process": "web"},
        },
        "spec": {"replicas": replicas},
    }
    cache.deployments.put(dep)
    cache.pods.reset(pods)
    cache.slices.reset(slices)
    return cache


def test_an_endpoint_whose_ready_condition_is_unknown_counts_as_ready() -> None:
    sl = endpoint_slice("blog", "web", [("blog-web-1", "10.0.0.1", True)], port=5000)
    del sl["endpoints"][0]["conditions"]["ready"]
    status = status_of(cache_with(pods=[], slices=[sl]), ("blog", "web"))
    assert status.ready == (Instance("blog-web-1", "10.0.0.1", 5000, ready=True),)


def test_a_terminating_endpoint_is_not_ready_even_if_it_says_so() -> None:
    sl = endpoint_slice("blog", "web", [("blog-web-1", "10.0.0.1", True)], port=5000)
    sl["endpoints"][0]["conditions"]["terminating"] = True
    status = status_of(cache_with(pods=[], slices=[sl]), ("blog", "web"))
    assert status.ready == ()


def test_endpoints_split_over_several_slices_are_all_used() -> None:
    a = endpoint_slice("blog", "web", [("blog-web-1", "10.0.0.1", True)], port=5000)
    b = endpoint_slice("blog", "web", [("blog-web-2", "10.0.0.2", True)], port=5000)
    b["metadata"]["name"] = "blog-web-fghij"
    status = status_of(cache_with(pods=[], slices=[a, b], replicas=2), ("blog", "web"))
    assert sorted(i.host for i in status.ready) == ["10.0.0.1", "10.0.0.2"]


def test_a_crashed_pod_is_never_ready_even_with_a_ready_endpoint() -> None:
    p = pod("blog", "web", 1, ip="10.0.0.1", waiting="ErrImagePull")
    sl = endpoint_slice("blog", "web", [("blog-web-1", "10.0.0.1", True)], port=5000)
    status = status_of(cache_with(pods=[p], slices=[sl]), ("blog", "web"))
    assert status.ready == ()
    assert status.crashed
    assert status.instances[0].reason == "ErrImagePull: back-off 40s"


def test_a_slice_without_ports_gives_no_endpoints() -> None:
    sl = endpoint_slice("blog", "web", [("blog-web-1", "10.0.0.1", True)], port=5000)
    sl["ports"] = []
    assert status_of(cache_with(pods=[], slices=[sl]), ("blog", "web")).instances == ()


def test_an_object_relabelled_to_another_app_moves_and_both_apps_are_recomputed() -> None:
    cache = Cache()
    cache.pods.put(pod("blog", "web", 1, ip="10.0.0.1"))
    moved = pod("shop", "web", 1, ip="10.0.0.1")
    moved["metadata"]["name"] = "blog-web-1"
    assert cache.pods.put(moved) == {("blog", "web"), ("shop", "web")}
    assert status_of(cache, ("blog", "web")).instances == ()
    assert [i.name for i in status_of(cache, ("shop", "web")).instances] == ["blog-web-1"]
    assert cache.pods.delete("blog-web-1") == {("shop", "web")}
    assert cache.keys() == set()


def test_objects_without_our_labels_belong_to_no_process() -> None:
    assert manifests.key_of({"metadata": {"labels": {"slipway.dev/app": "blog"}}}) is None
    assert manifests.key_of({}) is None


def test_an_unreadable_last_activity_annotation_reads_as_absent() -> None:
    obj = {"metadata": {"annotations": {manifests.LAST_ACTIVITY_ANNOTATION: "yesterday"}}}
    assert manifests.last_activity(obj) is None


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(410, Gone), (409, Conflict), (404, NotFound), (503, ApiUnavailable), (429, ApiUnavailable),
     (403, Rejected), (422, Rejected)],
)  # fmt: skip
def test_api_statuses_map_to_the_error_tree(status: int, error: type[Exception]) -> None:
    with pytest.raises(error, match="read thing: "), translated("read thing"):
        raise ApiException(status=status, reason="Because")
    assert isinstance(from_status(status, "x"), error)


def test_connection_errors_are_the_apiserver_being_unavailable() -> None:
    with (
        pytest.raises(ApiUnavailable, match="list pods: ConnectionRefusedError"),
        translated("list pods"),
    ):
        raise ConnectionRefusedError("refused")


# -- connecting -----------------------------------------------------------------------------------


async def test_a_kubeconfig_connects_the_client_to_its_server(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "{str(apiserver.url).rstrip("/")}"}}}}]
users: [{{name: test, user: {{token: not-a-real-token}}}}]
contexts: [{{name: test, context: {{cluster: test, user: test, namespace: {NAMESPACE}}}}}]
current-context: test
"""
    )
    await apiserver.put("pods", pod("blog", "web", 1, ip="10.0.0.1"))
    async with await api_client(str(kubeconfig)) as api:
        pods = await client.CoreV1Api(api).list_namespaced_pod(NAMESPACE)
    assert [p.metadata.name for p in pods.items] == ["blog-web-1"]
    (request,) = [r for r in apiserver if r.url.path.endswith("/pods")]
    assert request.headers["Authorization"] == "Bearer not-a-real-token"


async def test_a_missing_kubeconfig_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(Rejected, match=r"cannot load kubeconfig .*nope"):
        await api_client(str(tmp_path / "nope"))


def _failing(cache: Cache, message: str = "exceeded quota: q") -> Cache:
    (dep,) = cache.deployments.of(("blog", "web"))
    condition = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate"}
    dep["status"] = {"conditions": [condition | {"message": message}]}
    cache.deployments.put(dep)
    return cache


def test_pods_the_cluster_refuses_to_create_make_the_process_crashed_with_the_reason() -> None:
    status = status_of(_failing(cache_with(pods=[], slices=[])), ("blog", "web"))
    assert status.crashed
    (instance,) = status.instances
    assert instance.reason == "FailedCreate: exceeded quota: q"
    assert not instance.ready


def test_a_replica_failure_with_every_asked_pod_there_or_nothing_asked_is_no_crash() -> None:
    p = pod("blog", "web", 1, ip="10.0.0.1")
    sl = endpoint_slice("blog", "web", [("blog-web-1", "10.0.0.1", True)], port=5000)
    assert not status_of(_failing(cache_with(pods=[p], slices=[sl])), ("blog", "web")).crashed
    asleep = _failing(cache_with(pods=[], slices=[], replicas=0))
    assert status_of(asleep, ("blog", "web")).instances == ()


def test_a_pods_start_time_is_its_instances_since() -> None:
    p = pod("blog", "web", 1, ip="10.0.0.1")
    p["status"]["startTime"] = "2026-12-06T06:00:00Z"
    sl = endpoint_slice("blog", "web", [("blog-web-1", "10.0.0.1", True)], port=5000)
    (instance,) = status_of(cache_with(pods=[p], slices=[sl]), ("blog", "web")).instances
    assert instance.started_at == 1796536800.0
    p["status"]["startTime"] = "not a time"
    (instance,) = status_of(cache_with(pods=[p], slices=[]), ("blog", "web")).instances
    assert instance.started_at is None
