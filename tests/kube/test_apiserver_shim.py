"""The shim itself keeps the apiserver promises the runtime tests rely on."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE
from tests.kube.controllers import pod


def deployment(name: str, replicas: int = 0) -> dict:  # type: ignore[type-arg]
    return {
        "metadata": {"name": name, "labels": {"slipway.dev/app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"slipway.dev/app": name}},
            "template": {
                "metadata": {"labels": {"slipway.dev/app": name}},
                "spec": {"containers": [{"name": "web", "image": "img"}]},
            },
        },
    }


async def test_create_puts_the_namespace_of_the_url_on_the_object_and_refuses_duplicates(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(NAMESPACE, deployment("blog"))
    stored = apiserver.get("deployments", NAMESPACE, "blog")
    assert stored is not None
    assert stored["metadata"]["namespace"] == NAMESPACE
    with pytest.raises(ApiException) as caught:
        await apps.create_namespaced_deployment(NAMESPACE, deployment("blog"))
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["reason"] == "AlreadyExists"


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("slipway.dev/app", ["blog-web-1", "shop-web-1"]),
        ("slipway.dev/app=blog", ["blog-web-1"]),
        ("slipway.dev/app!=blog", ["other", "shop-web-1"]),
        ("!slipway.dev/app", ["other"]),
        ("slipway.dev/app=shop,slipway.dev/process=web", ["shop-web-1"]),
    ],
)
async def test_label_selectors_filter_lists(
    api: client.ApiClient, apiserver: ApiServer, selector: str, names: list[str]
) -> None:
    await apiserver.put("pods", pod("blog", "web", 1, ip="10.0.0.1"))
    await apiserver.put("pods", pod("shop", "web", 1, ip="10.0.0.2"))
    await apiserver.put("pods", {"metadata": {"name": "other", "namespace": NAMESPACE}})
    listed = await client.CoreV1Api(api).list_namespaced_pod(NAMESPACE, label_selector=selector)
    assert sorted(p.metadata.name for p in listed.items) == names


async def test_a_replace_with_a_stale_resource_version_is_a_409_conflict(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    apps = client.AppsV1Api(api)
    created = await apps.create_namespaced_deployment(NAMESPACE, deployment("blog"))
    stale = created.metadata.resource_version
    await apps.patch_namespaced_deployment("blog", NAMESPACE, {"metadata": {"labels": {"x": "y"}}})
    body = deployment("blog", 3)
    body["metadata"]["resourceVersion"] = stale
    with pytest.raises(ApiException) as caught:
        await apps.replace_namespaced_deployment("blog", NAMESPACE, body)
    assert caught.value.status == 409


async def test_the_scale_subresource_reads_and_writes_replicas_as_a_scale(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(NAMESPACE, deployment("blog", 1))
    scale = await apps.read_namespaced_deployment_scale("blog", NAMESPACE)
    assert scale.kind == "Scale"
    assert scale.spec.replicas == 1
    assert scale.status.selector == "slipway.dev/app=blog"
    scale.spec.replicas = 2
    replaced = await apps.replace_namespaced_deployment_scale("blog", NAMESPACE, scale)
    assert replaced.spec.replicas == 2
    scale.spec.replicas = 5  # scale still carries the old resourceVersion
    with pytest.raises(ApiException) as caught:
        await apps.replace_namespaced_deployment_scale("blog", NAMESPACE, scale)
    assert caught.value.status == 409
    stored = apiserver.get("deployments", NAMESPACE, "blog")
    assert stored is not None
    assert stored["spec"]["replicas"] == 2


async def test_a_watch_ends_at_its_timeout_seconds(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    resp = await client.CoreV1Api(api).list_namespaced_pod(
        NAMESPACE, watch=True, timeout_seconds=1, _preload_content=False
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(15):  # without timeout_seconds the watch never ends
        await resp.read()
    assert 0.9 <= loop.time() - started < 10


async def test_a_watch_from_a_compacted_version_gets_an_error_event_410(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    await apiserver.put("pods", pod("blog", "web", 1, ip="10.0.0.1"))
    apiserver.compact()
    resp = await client.CoreV1Api(api).list_namespaced_pod(
        NAMESPACE, watch=True, resource_version="1", _preload_content=False
    )
    async with asyncio.timeout(5):
        (line,) = (await resp.read()).splitlines()
    event = json.loads(line)
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
