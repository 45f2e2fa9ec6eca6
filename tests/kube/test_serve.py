"""Agent replicas as ``slipway serve agent --runtime kubernetes`` runs them: one leads, the
others forward to it, and a hand-over keeps what runs running."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.apps import AppConfig
from agent.dynowatch import DynoSettings
from agent.forward import ANSWERED
from agent.kubernetes.lease import LEADER_URL_ANNOTATION, LeaseRecord, lease_body
from agent.kubernetes.manifests import LAST_ACTIVITY_ANNOTATION as LAST_ACTIVITY
from agent.kubernetes.serve import advertised_url, serve_kubernetes
from agent.policy import Policy
from agent.settings import AgentSettings
from control.agent_target import AgentClient as ControlAgentClient
from kit.runner import supervise
from router.feed import AgentClient
from router.routes import AppState, Routes
from router.server import Router
from router.settings import RouterSettings
from tests.conftest import free_port
from tests.helpers import TIMEOUT, eventually
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE, write_kubeconfig
from tests.kube.controllers import endpoint_slice, pod, replicas_become
from tests.kube.test_runtime import SPEC

SLIPWAY = str(Path(sys.executable).parent / "slipway")
BLOG = AppConfig(
    name="blog", hosts=("blog.apps.test",), processes={"web": SPEC}, policy=Policy(idle_after=60)
)


def kube_env(identity: str) -> dict[str, str]:
    return {
        "SLIPWAY_KUBE_NAMESPACE": NAMESPACE,
        "SLIPWAY_KUBE_IDENTITY": identity,
        # Hand-overs in these tests come from a release (or a test's write), never from a
        # Lease running out, so a loaded machine cannot flip leadership under a test.
        "SLIPWAY_KUBE_LEASE_DURATION": "15",
        "SLIPWAY_KUBE_RENEW_INTERVAL": "0.1",
        "SLIPWAY_KUBE_BACKOFF_INITIAL": "0.05",
        "SLIPWAY_KUBE_BACKOFF_MAX": "0.2",
    }


@dataclass
class Replica:
    identity: str
    port: int
    stop: asyncio.Event
    task: asyncio.Task[int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def until_ok(http: aiohttp.ClientSession, url: str, timeout: float = TIMEOUT) -> None:
    async def ok() -> bool:
        try:
            async with http.get(url) as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(ok, timeout, interval=0.02)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


class Fleet:
    """Agent replicas in this process, each with its own client, registry and port."""

    def __init__(self, apiserver: ApiServer, tmp_path: Path, http: aiohttp.ClientSession) -> None:
        self.kubeconfig = write_kubeconfig(apiserver, tmp_path / "kubeconfig")
        self.http = http
        self.replicas: list[Replica] = []

    async def start(
        self,
        identity: str,
        apps: list[AppConfig],
        *,
        router_ttl: float = 10.0,
        forward_timeout: float = 5.0,
        env: dict[str, str] | None = None,
        logs_url: str | None = None,
        token: str | None = None,
        dynos: DynoSettings | None = None,
    ) -> Replica:
        port = free_port()
        stop = asyncio.Event()
        main = functools.partial(
            serve_kubernetes,
            AgentSettings(
                host="127.0.0.1",
                port=port,
                tick=0.02,
                router_ttl=router_ttl,
                forward_timeout=forward_timeout,
                logs_url=logs_url,
                token=token,
            ),
            apps,
            kube_env(identity) | {"SLIPWAY_KUBE_ACTIVITY_INTERVAL": "0.05"} | (env or {}),
            advertise=f"http://127.0.0.1:{port}",
            kubeconfig=str(self.kubeconfig),
            dynos=dynos,
        )
        task = asyncio.create_task(supervise(main, stop=stop))
        replica = Replica(identity, port, stop, task)
        self.replicas.append(replica)
        await until_ok(self.http, f"{replica.url}/readyz")
        return replica

    async def close(self) -> None:
        """Stop every replica; bounded, so a test that failed midway still ends."""
        for replica in self.replicas:
            replica.stop.set()
        tasks = [r.task for r in self.replicas]
        _, pending = await asyncio.wait(tasks, timeout=15) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert not pending, "a replica did not stop within 15 s of its stop event"


@pytest.fixture
async def fleet(
    apiserver: ApiServer, tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[Fleet]:
    fleet = Fleet(apiserver, tmp_path, http)
    yield fleet
    await fleet.close()


async def holder(apiserver: ApiServer, identity: str | None, timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while True:
            lease = apiserver.get("leases", NAMESPACE, "slipway-agent")
            if lease is not None and lease["spec"].get("holderIdentity") == identity:
                return
            await asyncio.sleep(0.02)


async def answered_by(http: aiohttp.ClientSession, url: str) -> str | None:
    """Who answered ``GET url``: a follower names the leader it forwarded to; None: itself."""
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers.get(ANSWERED)


# -- tests ----------------------------------------------------------------------------------------


async def test_a_follower_forwards_to_the_leader_which_hands_over_without_stopping_apps(
    fleet: Fleet, apiserver: ApiServer, http: aiohttp.ClientSession
) -> None:
    a = await fleet.start("agent-a", [BLOG])
    await holder(apiserver, "agent-a")
    b = await fleet.start("agent-b", [BLOG])
    lease = apiserver.get("leases", NAMESPACE, "slipway-agent")
    assert lease is not None
    assert lease["metadata"]["annotations"][LEADER_URL_ANNOTATION] == a.url

    # A wake sent to the follower is carried out by the leader.
    async with http.post(f"{b.url}/v1/apps/blog/wake") as resp:
        assert resp.status == 202, await resp.text()
        assert resp.headers[ANSWERED] == a.url
        assert (await resp.json())["state"] == "waking"
    await replicas_become(apiserver, "blog-web", 1)
    # The route feed and the states a follower serves are the leader's.
    assert await answered_by(http, f"{b.url}/v1/apps") == a.url
    async with http.get(f"{a.url}/v1/routes") as ra, http.get(f"{b.url}/v1/routes") as rb:
        assert (await ra.json())["version"] == (await rb.json())["version"]
    async with http.get(f"{b.url}/v1/routes", params={"after": "0"}) as resp:
        assert resp.status == 200  # a long poll whose version differs answers at once

    # The leader leaves (a rolling update): the Lease is released, b takes over at once...
    a.stop.set()
    assert await asyncio.wait_for(a.task, 10) == 0
    await holder(apiserver, "agent-b")

    async def b_answers_itself() -> bool:
        return await answered_by(http, f"{b.url}/v1/apps") is None

    await eventually(b_answers_itself, interval=0.02)
    # ... and adopts the running app instead of scaling it to zero.
    async with http.get(f"{b.url}/v1/apps") as resp:
        assert (await resp.json())["blog"]["desired"] == {"web": 1}
    await asyncio.sleep(0.3)  # several ticks and scaler rounds
    deployment = apiserver.get("deployments", NAMESPACE, "blog-web")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    lease = apiserver.get("leases", NAMESPACE, "slipway-agent")
    assert lease is not None
    assert lease["metadata"]["annotations"][LEADER_URL_ANNOTATION] == b.url


async def annotation(apiserver: ApiServer, name: str, timeout: float = TIMEOUT) -> float:
    async with asyncio.timeout(timeout):
        while True:
            obj = apiserver.get("deployments", NAMESPACE, name) or {}
            raw = (obj.get("metadata") or {}).get("annotations", {}).get(LAST_ACTIVITY)
            if raw is not None:
                return float(raw)
            await asyncio.sleep(0.02)


async def test_a_new_leader_sleeps_adopted_apps_by_their_persisted_last_activity(
    fleet: Fleet, apiserver: ApiServer, http: aiohttp.ClientSession
) -> None:
    apps = [
        dataclasses.replace(
            BLOG,
            name=name,
            hosts=(f"{name}.apps.test",),
            processes={"web": dataclasses.replace(SPEC, app=name)},
            # Far above what the test takes on a loaded machine: "fresh" must stay awake.
            policy=Policy(idle_after=60),
        )
        for name in ("old", "fresh")
    ]
    a = await fleet.start("agent-a", apps)
    await holder(apiserver, "agent-a")
    for n, app in enumerate(["old", "fresh"], 1):
        async with http.post(f"{a.url}/v1/apps/{app}/wake") as resp:
            assert resp.status == 202
        await replicas_become(apiserver, f"{app}-web", 1)
        await apiserver.put("pods", pod(app, "web", 1, ip=f"10.1.0.{n}"))
        await apiserver.put(
            "endpointslices",
            endpoint_slice(app, "web", [(f"{app}-web-1", f"10.1.0.{n}", True)], port=5000),
        )
    # A router saw requests for both just now; the leader persists it on the Deployments.
    async with http.get(f"{a.url}/v1/routes") as resp:
        version = (await resp.json())["version"]
    seen = {"requests": 1, "in_flight": 0, "idle_for": 0}
    post = {"router": "r1", "version": version, "apps": {"old": seen, "fresh": seen}}
    async with http.post(f"{a.url}/v1/activity", json=post) as resp:
        assert resp.status == 204
    assert abs(await annotation(apiserver, "fresh-web") - time.time()) < 5
    await annotation(apiserver, "old-web")
    # As if nobody had used "old" for an hour.
    patch = {"metadata": {"annotations": {LAST_ACTIVITY: f"{time.time() - 3600:.3f}"}}}
    await apiserver.patch_object("deployments", NAMESPACE, "old-web", patch)

    a.stop.set()
    assert await asyncio.wait_for(a.task, 10) == 0
    b = await fleet.start("agent-b", [], router_ttl=0.5)
    await holder(apiserver, "agent-b")
    # "old" sleeps once routers had router_ttl to report (none do), long before the 60 s a
    # leader that ignored the persisted activity would wait; "fresh" keeps its 60 s.
    await replicas_become(apiserver, "old-web", 0, timeout=20)
    fresh = apiserver.get("deployments", NAMESPACE, "fresh-web")
    assert fresh is not None
    assert fresh["spec"]["replicas"] == 1
    async with http.get(f"{b.url}/v1/apps") as resp:
        states = await resp.json()
    assert states["fresh"]["state"] == "awake"


async def test_a_wake_during_a_hand_over_waits_for_the_new_leader_instead_of_failing(
    fleet: Fleet, apiserver: ApiServer, http: aiohttp.ClientSession
) -> None:
    # Renewals 20 s apart: b would not look at the Lease again during this test on its own.
    slow = {"SLIPWAY_KUBE_RENEW_INTERVAL": "20", "SLIPWAY_KUBE_LEASE_DURATION": "60"}
    a = await fleet.start("agent-a", [BLOG], env=slow)
    await holder(apiserver, "agent-a")
    b = await fleet.start("agent-b", [BLOG], env=slow)
    a.stop.set()  # a rolling update: a releases the Lease and goes away
    assert await asyncio.wait_for(a.task, 10) == 0
    started = time.monotonic()
    async with http.post(f"{b.url}/v1/apps/blog/wake") as resp:
        # b finds a gone, looks at the Lease at once, takes it, learns the apps, answers.
        assert resp.status == 202, await resp.text()
        assert ANSWERED not in resp.headers
    took = time.monotonic() - started
    print(f"wake answered across a hand-over: {took * 1000:.0f} ms")
    # At once, not at b's next renewal 20 s later (margin for a loaded machine).
    assert took < 10
    await holder(apiserver, "agent-b")
    await replicas_become(apiserver, "blog-web", 1)


def ghost_lease(url: str | None) -> dict[str, Any]:
    """A Lease held for a minute by a replica we do not run, advertising ``url``."""
    now = time.time()
    body = lease_body("slipway-agent", LeaseRecord("ghost", 60, now, now, 0), None, advertise=url)
    body["metadata"]["namespace"] = NAMESPACE
    return body


async def test_with_no_reachable_leader_a_follower_answers_503_and_never_loops(
    fleet: Fleet, apiserver: ApiServer, http: aiohttp.ClientSession
) -> None:
    await apiserver.put("leases", ghost_lease(None))
    # The default 5 s hop: a 0.3 s one timed out on a loaded machine, and the hop to b
    # itself then read as a timeout, not "does not lead". A loop would still show: it
    # would end at the hop's timeout, with that error, not this test's.
    b = await fleet.start("agent-b", [BLOG])
    async with http.post(f"{b.url}/v1/apps/blog/wake") as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert "no agent leads right now" in (await resp.json())["error"]
    # The ghost advertises b itself (an out-of-date Lease): one hop, then a clear 503.
    await apiserver.patch_object(
        "leases",
        NAMESPACE,
        "slipway-agent",
        {"metadata": {"annotations": {LEADER_URL_ANNOTATION: b.url}}},
    )
    async with asyncio.timeout(TIMEOUT):
        while True:
            async with http.post(f"{b.url}/v1/apps/blog/wake") as resp:
                assert resp.status == 503
                error = (await resp.json())["error"]
                if "which does not lead (a follower)" in error:
                    break
            await asyncio.sleep(0.05)
    # A dead leader: connection refused, a 503 naming it.
    dead = f"http://127.0.0.1:{free_port()}"
    await apiserver.patch_object(
        "leases",
        NAMESPACE,
        "slipway-agent",
        {"metadata": {"annotations": {LEADER_URL_ANNOTATION: dead}}},
    )
    async with asyncio.timeout(TIMEOUT):
        while True:
            async with http.get(f"{b.url}/v1/apps") as resp:
                assert resp.status == 503
                if f"cannot reach the leader at {dead}" in (await resp.json())["error"]:
                    break
            await asyncio.sleep(0.05)
    assert apiserver.get("deployments", NAMESPACE, "blog-web") is None  # nobody scaled


async def test_readiness_follows_the_watches_and_a_leader_that_loses_the_lease_exits(
    fleet: Fleet, apiserver: ApiServer, http: aiohttp.ClientSession
) -> None:
    a = await fleet.start("agent-a", [BLOG])
    await holder(apiserver, "agent-a")
    apiserver.outage = True
    await apiserver.drop_watches()
    async with asyncio.timeout(TIMEOUT):
        while True:
            async with http.get(f"{a.url}/readyz") as resp:
                if resp.status == 503:
                    assert "the view of the cluster may be stale" in await resp.text()
                    break
            await asyncio.sleep(0.02)
    apiserver.outage = False
    await until_ok(http, f"{a.url}/readyz")
    # Someone else holds the Lease now (a partition healed the other way): a steps down.
    await apiserver.patch_object(
        "leases",
        NAMESPACE,
        "slipway-agent",
        {"spec": ghost_lease(None)["spec"]},
    )
    assert await asyncio.wait_for(a.task, 5) == 1


def test_the_advertised_url_is_the_flag_or_the_pod_ip_and_port() -> None:
    assert advertised_url("http://agent-0.agents:9081/", {}, 1) == "http://agent-0.agents:9081"
    assert advertised_url(None, {"POD_IP": "10.1.2.3"}, 8081) == "http://10.1.2.3:8081"
    assert advertised_url(None, {"POD_IP": "fd00::7"}, 8081) == "http://[fd00::7]:8081"
    assert advertised_url(None, {}, 8081) is None


async def test_slipway_serve_agent_reads_the_runtime_from_the_environment(
    apiserver: ApiServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **kube_env("agent-cli"),
        "KUBECONFIG": str(write_kubeconfig(apiserver, tmp_path / "kubeconfig")),
        "SLIPWAY_AGENT_RUNTIME": "kubernetes",
        "POD_IP": "127.0.0.1",
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.pop("SLIPWAY_APPS", None)
    proc = await asyncio.create_subprocess_exec(
        SLIPWAY, "serve", "agent", "--host=127.0.0.1", f"--port={port}", env=env
    )
    try:
        await until_ok(http, f"http://127.0.0.1:{port}/readyz", timeout=20)
        await holder(apiserver, "agent-cli")
        lease = apiserver.get("leases", NAMESPACE, "slipway-agent")
        assert lease is not None
        annotations = lease["metadata"]["annotations"]
        assert annotations[LEADER_URL_ANNOTATION] == f"http://127.0.0.1:{port}"
        async with http.get(f"http://127.0.0.1:{port}/v1/apps") as resp:
            assert await resp.json() == {}  # no apps file: apps come from the control plane
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        await holder(apiserver, None)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- end to end: the control plane's definition, a router, a wake and a sleep ---------------------


async def test_a_definition_sent_to_a_follower_runs_wakes_through_a_router_and_sleeps(
    fleet: Fleet, apiserver: ApiServer, http: aiohttp.ClientSession, unused_port: int
) -> None:
    # The pod: a real HTTP server on loopback standing in for the pod IP.
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from the pod, release 7\n")

    upstream = web.Application()
    upstream.router.add_get("/", hello)
    pod_runner = web.AppRunner(upstream)
    await pod_runner.setup()
    await web.TCPSite(pod_runner, "127.0.0.1", unused_port).start()

    a = await fleet.start("agent-a", [])
    await holder(apiserver, "agent-a")
    b = await fleet.start("agent-b", [])
    definition = {
        "hosts": ["shop.apps.test"],
        "release": 7,
        "env": {"SECRET_KEY_BASE": "s3cr3t"},
        "processes": {
            "web": {
                "command": "bundle exec puma -p $PORT",
                "image": "registry.test/shop@sha256:77",
                "health_path": "/up",
            }
        },
        "formation": {"web": 1},
        "policy": {"idle_after": 0.5, "boot_timeout": 10},
    }
    # `slipway serve control --agent-url` (its client), reaching the replica the Service picked.
    control = ControlAgentClient(b.url, timeout=5)
    await control.define("shop", definition)
    async with http.get(f"{b.url}/v1/apps/shop") as resp:
        assert resp.headers[ANSWERED] == a.url
    deployment = apiserver.get("deployments", NAMESPACE, "shop-web")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 0
    assert "s3cr3t" not in json.dumps(deployment)
    secret = apiserver.get("secrets", NAMESPACE, "shop-env-v7")
    assert secret is not None
    assert secret["stringData"] == {"SECRET_KEY_BASE": "s3cr3t"}
    # No image: refused before anything is written.
    del definition["processes"]["web"]["image"]  # type: ignore[index]
    async with http.put(f"{b.url}/v1/apps/other", json=definition) as resp:
        assert resp.status == 422
        assert "an image is required on Kubernetes" in (await resp.json())["error"]
    assert apiserver.get("deployments", NAMESPACE, "other-web") is None

    # A router fed by the follower (its feed, reports and wakes all reach the leader).
    routes = Routes()
    feed = AgentClient(b.url, routes=routes, report_interval=0.1)
    router = Router(
        RouterSettings(host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0),
        routes=routes,
        registry=CollectorRegistry(),
        waker=feed,
    )
    feed.activity = router.activity
    await feed.start()
    await router.start()

    async def deployment_controller() -> None:
        await replicas_become(apiserver, "shop-web", 1)
        await apiserver.put("pods", pod("shop", "web", 1, ip="127.0.0.1"))
        await apiserver.put(
            "endpointslices",
            endpoint_slice("shop", "web", [("shop-web-1", "127.0.0.1", True)], port=unused_port),
        )

    try:
        await eventually(lambda: routes.table.resolve("shop.apps.test") is not None)
        controller = asyncio.create_task(deployment_controller())
        started = time.monotonic()
        async with http.get(
            f"http://127.0.0.1:{router.port}/", headers={"Host": "shop.apps.test"}
        ) as resp:
            assert resp.status == 200
            assert await resp.text() == "hello from the pod, release 7\n"
        woke_in = time.monotonic() - started
        await controller
        print(f"wake through a follower, kmock and the router: {woke_in * 1000:.0f} ms")

        # Idle: the leader drains the routers, then scales to 0; the controllers follow.
        await replicas_become(apiserver, "shop-web", 0, timeout=10)
        assert routes.table.apps["shop"].state is AppState.ASLEEP
        await apiserver.put("endpointslices", endpoint_slice("shop", "web", [], port=unused_port))
        await apiserver.delete_object("pods", NAMESPACE, "shop-web-1")
        shown = await control.status("shop")
        assert shown is not None
        assert shown["state"] == "asleep"
        assert shown["processes"]["web"]["release"] == 7

        # A restart rolls the pods in place; forgetting the app deletes what it made.
        await control.restart("shop", None)
        restarted = apiserver.get("deployments", NAMESPACE, "shop-web")
        assert restarted is not None
        template = restarted["spec"]["template"]["metadata"]
        assert "slipway.dev/restarted-at" in template["annotations"]
        assert apiserver.get("secrets", NAMESPACE, "shop-env-v7") is not None
        await control.forget("shop")
        assert await control.status("shop") is None
        for plural, name in [
            ("deployments", "shop-web"),
            ("services", "shop-web"),
            ("secrets", "shop-env-v7"),
        ]:
            assert apiserver.get(plural, NAMESPACE, name) is None, (plural, name)
    finally:
        await router.stop(grace=1)
        await feed.stop()
        await control.close()
        await pod_runner.cleanup()


async def test_a_release_command_sent_to_a_follower_runs_once_on_the_leader_past_the_hop_timeout(
    fleet: Fleet, apiserver: ApiServer, http: aiohttp.ClientSession
) -> None:
    """The run outlasts ``forward_timeout``: the follower waits as long as the run may take."""
    a = await fleet.start("agent-a", [], forward_timeout=0.5)
    await holder(apiserver, "agent-a")
    b = await fleet.start("agent-b", [], forward_timeout=0.5)
    body = {
        "definition": {
            "release": 9,
            "env": {"SECRET_KEY": "s"},
            "processes": {"release": {"command": "migrate", "image": "registry.test/shop@x"}},
        },
        "command": "migrate",
        "timeout": 20,
    }
    run = asyncio.create_task(http.post(f"{b.url}/v1/apps/shop/run", json=body))
    jobs = await eventually(lambda: apiserver.objects_of("jobs"), interval=0.02)
    await asyncio.sleep(1.0)  # twice the hop's own timeout
    (job,) = jobs
    assert job["metadata"]["name"].startswith("shop-run-v9-")
    assert apiserver.get("secrets", NAMESPACE, "shop-env-v9") is not None
    condition = {"type": "Complete", "status": "True"}
    await apiserver.patch_object(
        "jobs", NAMESPACE, job["metadata"]["name"], {"status": {"conditions": [condition]}}
    )
    async with await asyncio.wait_for(run, 10) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers[ANSWERED] == a.url
        answer = await resp.json()
    assert answer["ok"] is True
    assert len(apiserver.objects_of("jobs")) == 1  # run once, by the leader


# -- pods the cluster will not create -------------------------------------------------------------


async def test_a_quota_that_refuses_the_pods_ends_the_wake_with_that_reason_not_a_timeout(
    fleet: Fleet, apiserver: ApiServer, http: aiohttp.ClientSession
) -> None:
    """A namespace out of quota (or enforcing a Pod Security level the pod fails) never gets
    the pod: the ReplicaSet controller reports it on the Deployment, and the wake's answer
    to the router is the crashed state with that reason instead of an H20 after 60 s."""
    a = await fleet.start("agent-a", [BLOG])
    await holder(apiserver, "agent-a")
    async with http.post(f"{a.url}/v1/apps/blog/wake") as resp:
        assert resp.status == 202
    await replicas_become(apiserver, "blog-web", 1)
    # What the deployment controller writes when its ReplicaSet cannot create the pod.
    message = (
        'pods "blog-web-5d9f-x1y2z" is forbidden: exceeded quota: tenant-quota, '
        "requested: limits.memory=512Mi, used: limits.memory=2Gi, limited: limits.memory=2Gi"
    )
    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate"}
    status = {"status": {"conditions": [failure | {"message": message}]}}
    await apiserver.patch_object("deployments", NAMESPACE, "blog-web", status)
    # Generous: on a loaded machine the watch event may take seconds to reach the cache.
    async with asyncio.timeout(30):
        while True:
            async with http.get(f"{a.url}/v1/routes") as resp:
                route = (await resp.json())["apps"]["blog"]
            if route.get("state") == "crashed":
                break
            await asyncio.sleep(0.02)
    assert "FailedCreate" in route["reason"]
    assert "exceeded quota: tenant-quota" in route["reason"]
    async with http.get(f"{a.url}/v1/apps/blog") as resp:
        assert "exceeded quota" in json.dumps(await resp.json())
