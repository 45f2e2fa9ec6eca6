"""KubernetesRuntime against kmock+shim over HTTP, with the tests playing the controllers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from agent.apps import AppConfig
from agent.definition import definition_json, parse_definition
from agent.kubernetes.errors import NotLeader
from agent.kubernetes.runtime import KubernetesRuntime
from agent.kubernetes.settings import KubeSettings
from agent.runtime import ProcessSpec, ProcessStatus
from router.routes import AppRoute, AppState, Endpoint, Routes, RouteTable
from router.server import Router
from router.settings import RouterSettings
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE
from tests.kube.controllers import endpoint_slice, pod, replicas_become

SPEC = ProcessSpec(
    app="blog",
    process="web",
    command="bundle exec puma -p $PORT",
    image="registry.test/blog@sha256:abc",
    release=3,
    env={"DATABASE_URL": "postgres://blog@db/blog"},
    health_path="/up",
)


def settings(**overrides: object) -> KubeSettings:
    base: dict[str, object] = {
        "namespace": NAMESPACE,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "watch_timeout": 30,
    }
    return KubeSettings(**(base | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def runtime(api: client.ApiClient) -> AsyncIterator[KubernetesRuntime]:
    rt = KubernetesRuntime(api, settings=settings(), registry=CollectorRegistry())
    yield rt
    await rt.close()


async def next_status(statuses: AsyncIterator[ProcessStatus], timeout: float = 5) -> ProcessStatus:
    return await asyncio.wait_for(anext(statuses), timeout)


async def status_until(
    statuses: AsyncIterator[ProcessStatus],
    check: Callable[[ProcessStatus], bool],
    timeout: float = 5,
) -> ProcessStatus:
    async with asyncio.timeout(timeout):
        while True:
            status = await anext(statuses)
            if check(status):
                return status


# -- apply / remove -------------------------------------------------------------------------------


async def test_apply_creates_a_labelled_deployment_at_zero_replicas_and_a_web_service(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    await runtime.apply(SPEC)
    dep = apiserver.get("deployments", NAMESPACE, "blog-web")
    assert dep is not None
    assert dep["metadata"]["namespace"] == NAMESPACE
    assert dep["metadata"]["labels"]["slipway.dev/app"] == "blog"
    assert dep["metadata"]["labels"]["slipway.dev/process"] == "web"
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "slipway"
    assert dep["spec"]["replicas"] == 0
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/cnb/process/web"]
    assert container["image"] == SPEC.image
    # Config vars come from the release's immutable Secret, never inline in the Deployment.
    assert container["env"] == [
        {"name": "PORT", "value": "5000"},
        {"name": "DYNO", "value": "web.1"},
    ]
    assert container["envFrom"] == [{"secretRef": {"name": "blog-env-v3"}}]
    assert "postgres://" not in json.dumps(dep)
    secret = apiserver.get("secrets", NAMESPACE, "blog-env-v3")
    assert secret is not None
    assert secret["immutable"] is True
    assert secret["stringData"] == {"DATABASE_URL": "postgres://blog@db/blog"}
    assert secret["metadata"]["labels"]["slipway.dev/app"] == "blog"
    assert secret["metadata"]["labels"]["slipway.dev/release"] == "3"
    assert container["readinessProbe"]["httpGet"] == {"path": "/up", "port": "http"}
    assert dep["spec"]["template"]["metadata"]["labels"]["slipway.dev/release"] == "3"
    svc = apiserver.get("services", NAMESPACE, "blog-web")
    assert svc is not None
    assert svc["spec"]["selector"] == {"slipway.dev/app": "blog", "slipway.dev/process": "web"}


async def test_reapplying_a_spec_patches_it_and_keeps_the_replicas_the_scale_set(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    await runtime.apply(SPEC)
    await runtime.scale("blog", "web", 2)
    release4 = dataclasses.replace(SPEC, release=4, command="bundle exec puma")
    await runtime.apply(release4)
    dep = apiserver.get("deployments", NAMESPACE, "blog-web")
    assert dep is not None
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["metadata"]["labels"]["slipway.dev/release"] == "4"
    container = dep["spec"]["template"]["spec"]["containers"][0]
    # The image's launcher runs the Procfile line (control/builds/cnb.py).
    assert container["command"] == ["/cnb/process/web"]
    assert container["envFrom"] == [{"secretRef": {"name": "blog-env-v4"}}]
    # Release 3's Secret stays for its ReplicaSet's pods until it is long gone.
    assert apiserver.get("secrets", NAMESPACE, "blog-env-v3") is not None
    assert apiserver.get("secrets", NAMESPACE, "blog-env-v4") is not None


async def test_only_the_newest_releases_env_secrets_are_kept(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    for release in range(1, 6):
        await runtime.apply(dataclasses.replace(SPEC, release=release))
    names = sorted(o["metadata"]["name"] for o in apiserver.objects_of("secrets"))
    assert names == ["blog-env-v3", "blog-env-v4", "blog-env-v5"]


async def test_reapplying_an_unchanged_spec_sends_nothing_once_the_watch_has_it(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    await runtime.apply(SPEC)
    statuses = runtime.watch()
    await next_status(statuses)
    before = len(apiserver)
    await runtime.apply(SPEC)
    assert len(apiserver) == before
    await runtime.apply(dataclasses.replace(SPEC, health_path="/health"))
    assert len(apiserver) > before
    await statuses.aclose()  # type: ignore[attr-defined]


async def test_an_apply_right_after_a_remove_creates_the_deployment_again(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    await runtime.apply(SPEC)
    statuses = runtime.watch()
    await next_status(statuses)
    await runtime.remove("blog", "web")
    await runtime.apply(SPEC)  # the watch may not have seen the delete yet: no skip
    assert apiserver.get("deployments", NAMESPACE, "blog-web") is not None
    assert apiserver.get("secrets", NAMESPACE, "blog-env-v3") is not None
    await statuses.aclose()  # type: ignore[attr-defined]


async def test_deployments_carry_the_app_definition_without_env_values(
    api: client.ApiClient, runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    config = AppConfig(
        name="blog",
        hosts=("blog.apps.test",),
        processes={"web": SPEC, "worker": dataclasses.replace(SPEC, process="worker")},
        formation={"web": 2},
        always_on=frozenset({"worker"}),
    )
    runtime.describe(config)
    for spec in config.processes.values():
        await runtime.apply(spec)
    dep = apiserver.get("deployments", NAMESPACE, "blog-worker")
    assert dep is not None
    stored = json.loads(dep["metadata"]["annotations"]["slipway.dev/definition"])
    assert stored == {k: v for k, v in definition_json(config).items() if k != "env"}

    # Another agent (a new leader) reads it back from its watch and gets the app again.
    other = KubernetesRuntime(api, settings=settings(), registry=CollectorRegistry())
    statuses = other.watch()
    await next_status(statuses)
    rebuilt = parse_definition("blog", other.definitions()["blog"])
    assert rebuilt.hosts == config.hosts
    assert rebuilt.formation == {"web": 2}
    assert rebuilt.always_on == {"worker"}
    assert rebuilt.processes["web"].image == SPEC.image
    assert rebuilt.processes["web"].env == {}  # the values stay in the Secret
    await statuses.aclose()  # type: ignore[attr-defined]
    await other.close()


async def test_a_worker_gets_no_service_and_remove_deletes_what_apply_made(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    worker = ProcessSpec(app="blog", process="worker", command="", image="img@sha256:1")
    await runtime.apply(worker)
    await runtime.apply(SPEC)
    assert apiserver.get("services", NAMESPACE, "blog-worker") is None
    await runtime.remove("blog", "web")
    await runtime.remove("blog", "web")  # already gone: not an error
    assert apiserver.get("deployments", NAMESPACE, "blog-web") is None
    assert apiserver.get("services", NAMESPACE, "blog-web") is None
    assert apiserver.get("deployments", NAMESPACE, "blog-worker") is not None
    assert len(apiserver.objects_of("secrets")) == 2  # the worker still runs on them
    await runtime.remove("blog", "worker")
    assert apiserver.objects_of("secrets") == []  # the app's last process: its config goes


async def test_a_spec_without_an_image_is_refused_with_a_clear_error(
    runtime: KubernetesRuntime,
) -> None:
    with pytest.raises(ValueError, match="blog/web: an image is required"):
        await runtime.apply(ProcessSpec(app="blog", process="web", command=""))


async def test_a_negative_scale_is_refused_before_any_request(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    await runtime.apply(SPEC)
    before = len(apiserver)
    with pytest.raises(ValueError, match="replicas must be >= 0, got -1"):
        await runtime.scale("blog", "web", -1)
    assert len(apiserver) == before


# -- scaling and status ---------------------------------------------------------------------------


async def test_scale_goes_through_the_scale_subresource(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    await runtime.apply(SPEC)
    await runtime.scale("blog", "web", 1)
    last = list(apiserver)[-1]
    assert last.method.value == "PATCH"
    assert last.url.path == f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/blog-web/scale"
    assert last.data == {"spec": {"replicas": 1}}


async def test_a_replica_that_is_not_the_leader_refuses_to_scale_or_annotate(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    rt = KubernetesRuntime(
        api, settings=settings(), registry=CollectorRegistry(), is_leader=lambda: False
    )
    before = len(apiserver)
    with pytest.raises(NotLeader, match="not the leader"):
        await rt.scale("blog", "web", 1)
    with pytest.raises(NotLeader, match="not the leader"):
        await rt.record_activity("blog", "web", 1_700_000_000.0)
    assert len(apiserver) == before


async def test_wake_and_idle_produce_the_snapshots_the_agent_decides_on(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    await runtime.apply(SPEC)
    statuses = runtime.watch()
    assert await next_status(statuses) == ProcessStatus("blog", "web", desired=0)

    await runtime.scale("blog", "web", 1)
    assert await next_status(statuses) == ProcessStatus("blog", "web", desired=1)

    await apiserver.put("pods", pod("blog", "web", 1, ip="10.1.0.7"))
    booting = await next_status(statuses)
    assert booting.desired == 1
    assert booting.ready == ()
    assert booting.instances[0].host == "10.1.0.7"
    assert booting.instances[0].reason == "no endpoint yet"

    await apiserver.put(
        "endpointslices",
        endpoint_slice("blog", "web", [("blog-web-1", "10.1.0.7", False)], port=5000),
    )
    unready = await next_status(statuses)
    assert unready.ready == ()
    assert unready.instances[0].port == 5000

    await apiserver.put(
        "endpointslices",
        endpoint_slice("blog", "web", [("blog-web-1", "10.1.0.7", True)], port=5000),
    )
    awake = await next_status(statuses)
    assert [(i.name, i.host, i.port) for i in awake.ready] == [("blog-web-1", "10.1.0.7", 5000)]

    await runtime.scale("blog", "web", 0)
    draining = await next_status(statuses)
    assert draining.desired == 0
    assert len(draining.ready) == 1  # the pod is still there until the controller removes it
    await apiserver.put("endpointslices", endpoint_slice("blog", "web", [], port=5000))
    await apiserver.delete_object("pods", NAMESPACE, "blog-web-1")
    asleep = await status_until(statuses, lambda s: not s.instances)
    assert asleep == ProcessStatus("blog", "web", desired=0)
    await statuses.aclose()  # type: ignore[attr-defined]


async def test_a_crash_looping_pod_is_reported_crashed_with_the_reason(
    runtime: KubernetesRuntime, apiserver: ApiServer
) -> None:
    await runtime.apply(SPEC)
    await runtime.scale("blog", "web", 1)
    statuses = runtime.watch()
    await next_status(statuses)
    await apiserver.put("pods", pod("blog", "web", 1, ip="10.1.0.8", waiting="CrashLoopBackOff"))
    status = await next_status(statuses)
    assert status.crashed
    assert status.instances[0].reason == "CrashLoopBackOff: back-off 40s"
    assert status.instances[0].restarts == 3
    await apiserver.put("pods", pod("blog", "web", 1, ip="10.1.0.8", waiting="ImagePullBackOff"))
    status = await next_status(statuses)
    assert status.instances[0].reason.startswith("ImagePullBackOff")
    await statuses.aclose()  # type: ignore[attr-defined]


async def test_last_activity_survives_an_agent_restart_as_a_deployment_annotation(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    first = KubernetesRuntime(api, settings=settings(), registry=CollectorRegistry())
    await first.apply(SPEC)
    await first.record_activity("blog", "web", 1_700_000_123.5)
    await first.close()
    dep = apiserver.get("deployments", NAMESPACE, "blog-web")
    assert dep is not None
    assert dep["metadata"]["annotations"]["slipway.dev/last-activity"] == "1700000123.500"

    restarted = KubernetesRuntime(api, settings=settings(), registry=CollectorRegistry())
    statuses = restarted.watch()
    await next_status(statuses)
    assert restarted.last_activity("blog") == 1_700_000_123.5
    assert restarted.last_activity("other") is None
    await statuses.aclose()  # type: ignore[attr-defined]
    await restarted.close()


# -- end to end through the router ----------------------------------------------------------------


def table_of(statuses: dict[str, ProcessStatus], version: int) -> RouteTable:
    """What the agent publishes: the web process's ready endpoints per app."""
    apps = []
    for app, s in statuses.items():
        state = (
            AppState.AWAKE if s.ready
            else AppState.CRASHED if s.crashed
            else AppState.WAKING if s.desired
            else AppState.ASLEEP
        )  # fmt: skip
        apps.append(
            AppRoute(
                app,
                hosts=(f"{app}.apps.test",),
                endpoints=tuple(Endpoint(str(i.host), int(i.port or 0), i.name) for i in s.ready),
                state=state,
                boot_timeout=10,
            )
        )
    return RouteTable.build(version, apps)


async def test_a_request_wakes_the_app_through_the_router_and_idle_puts_it_back_to_sleep(
    runtime: KubernetesRuntime, apiserver: ApiServer, unused_port: int
) -> None:
    # The pod: a real HTTP server on loopback standing in for the pod IP.
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from the pod\n")

    upstream = web.Application()
    upstream.router.add_get("/", hello)
    runner = web.AppRunner(upstream)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_port).start()

    class Waker:
        async def wake(self, app: str) -> None:
            await runtime.scale(app, "web", 1)

    await runtime.apply(SPEC)
    routes = Routes()
    router = Router(
        RouterSettings(host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0),
        routes=routes,
        registry=CollectorRegistry(),
        waker=Waker(),
    )
    await router.start()

    seen: dict[str, ProcessStatus] = {}

    async def publish() -> None:
        async for status in runtime.watch():
            seen[status.app] = status
            routes.replace(table_of(seen, routes.table.version + 1))

    async def deployment_controller() -> None:
        await replicas_become(apiserver, "blog-web", 1)
        await apiserver.put("pods", pod("blog", "web", 1, ip="127.0.0.1"))
        await apiserver.put(
            "endpointslices",
            endpoint_slice("blog", "web", [("blog-web-1", "127.0.0.1", True)], port=unused_port),
        )

    publisher = asyncio.create_task(publish())
    try:
        async with asyncio.timeout(5):
            while routes.table.resolve("blog.apps.test") is None:
                await asyncio.sleep(0.01)
        route = routes.table.resolve("blog.apps.test")
        assert route is not None
        assert route.state is AppState.ASLEEP

        controller = asyncio.create_task(deployment_controller())
        async with aiohttp.ClientSession() as http:
            resp = await http.get(
                f"http://127.0.0.1:{router.port}/",
                headers={"Host": "blog.apps.test"},
                timeout=aiohttp.ClientTimeout(total=10),
            )
            assert resp.status == 200
            assert await resp.text() == "hello from the pod\n"
        await controller
        assert seen["blog"].desired == 1

        # Idle: the agent's policy decides; here we do what it would, then the controllers act.
        await runtime.scale("blog", "web", 0)
        await apiserver.put("endpointslices", endpoint_slice("blog", "web", [], port=unused_port))
        await apiserver.delete_object("pods", NAMESPACE, "blog-web-1")
        async with asyncio.timeout(5):
            while seen["blog"] != ProcessStatus("blog", "web", desired=0):
                await asyncio.sleep(0.01)
        assert routes.table.apps["blog"].state is AppState.ASLEEP
        assert routes.table.apps["blog"].endpoints == ()
    finally:
        publisher.cancel()
        await router.stop(grace=1)
        await runner.cleanup()
