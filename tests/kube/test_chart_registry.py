"""The chart's in-cluster image registry for build output (issue #19), off by default.

Builds push to the registry's Service over plain HTTP; a proxy on every node (hostPort)
serves the pulls, so kubelets pull ``localhost:5000/<app>@sha256:...`` without node
configuration. Each object is asserted by what it must hold; the NetworkPolicies object by
object; the proxy's nginx config is run by a real nginx.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import helm_python as helm
import kubernetes_validate
import pytest
from aiohttp import web

from control.builds.cnb import build_job
from control.builds.settings import CNBSettings
from tests.conftest import free_port
from tests.helpers import eventually
from tests.kube.test_chart import (
    CHART,
    CONTROL,
    KUBE_VERSION,
    NAMESPACE,
    containers,
    named,
    of_kind,
    render,
    values_of,
    with_required,
)
from tests.kube.test_chart_fence import policies
from tests.kube.test_chart_operator import notes
from tests.kube.test_tenant_pods import restricted_violations

SERVICE = f"slipway-registry.{NAMESPACE}.svc:5000"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def registry_values(options: dict[str, Any] | None = None, **builds: Any) -> dict[str, Any]:
    return with_required(
        {
            "control": {
                **CONTROL,
                "builds": {
                    "kubernetes": True,
                    "inClusterRegistry": {"enabled": True, **(options or {})},
                    **builds,
                },
            }
        }
    )


def env_of(docs: list[dict[str, Any]], deployment: str) -> dict[str, str | None]:
    (container,) = [c for name, _, c in containers(docs) if name == deployment]
    return {e["name"]: e.get("value") for e in container["env"]}


def registry_objects(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (d["kind"], d["metadata"]["name"])
        for d in docs
        if d["metadata"]["name"].startswith("slipway-registry")
    ]


class TestOffByDefault:
    def test_nothing_of_it_is_rendered_by_default_nor_with_builds_on_an_external_registry(
        self,
    ) -> None:
        external = with_required(
            {"control": {**CONTROL, "builds": {"kubernetes": True, "registry": "ghcr.io/a"}}}
        )
        for docs in (render(values_of("default")), render(values_of("full")), render(external)):
            assert registry_objects(docs) == []
            assert of_kind(docs, "DaemonSet") == []
            assert "SLIPWAY_CNB_PULL_REGISTRY" not in str(docs)
        env = env_of(render(external), "slipway-control")
        assert env["SLIPWAY_CNB_REGISTRY_SECRET"] == "slipway-registry"
        assert "SLIPWAY_CNB_INSECURE_REGISTRY" not in env

    def test_it_is_refused_without_builds_on_the_cluster_saying_what_to_set(self) -> None:
        values = with_required(
            {"control": {**CONTROL, "builds": {"inClusterRegistry": {"enabled": True}}}}
        )
        with pytest.raises(helm.HelmRenderError, match=re.escape("control.builds.kubernetes")):
            render(values)

    @pytest.mark.parametrize(
        ("registry", "complaint"),
        [
            ({"enable": True}, "enable"),
            ({"persistence": {"size": "lots"}}, "/control/builds/inClusterRegistry/persistence"),
            ({"proxy": {"hostPort": 70000}}, "/control/builds/inClusterRegistry/proxy/hostPort"),
        ],
    )
    def test_a_misspelt_or_mistyped_value_is_refused_naming_it(
        self, registry: dict[str, Any], complaint: str
    ) -> None:
        with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
            render(registry_values(registry))


class TestTheRegistry:
    def test_every_object_validates_and_the_chart_lints_clean(self) -> None:
        values = registry_values()
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        assert report["errors"] == []
        assert report["messages"] == []
        docs = render(values)
        assert sorted(registry_objects(docs)) == [
            ("ConfigMap", "slipway-registry-proxy"),
            ("DaemonSet", "slipway-registry-proxy"),
            ("Deployment", "slipway-registry"),
            ("NetworkPolicy", "slipway-registry"),
            ("PersistentVolumeClaim", "slipway-registry"),
            ("Service", "slipway-registry"),
        ]
        for doc in docs:
            if doc["metadata"]["name"].startswith("slipway-registry"):
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)

    def test_the_registry_pod_passes_pod_security_restricted_with_only_storage_and_tmp_writable(
        self,
    ) -> None:
        dep = named(render(registry_values()), "Deployment", "slipway-registry")
        assert dep["spec"]["replicas"] == 1
        assert dep["spec"]["strategy"] == {"type": "Recreate"}  # one RWO claim
        pod = dep["spec"]["template"]["spec"]
        assert restricted_violations(pod) == []
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["automountServiceAccountToken"] is False
        (registry,) = pod["containers"]
        assert registry["image"] == "docker.io/library/registry:2.8.3"
        assert registry["securityContext"]["readOnlyRootFilesystem"] is True
        assert {m["mountPath"] for m in registry["volumeMounts"]} == {"/var/lib/registry", "/tmp"}
        assert registry["resources"]["limits"] == {"memory": "512Mi"}
        assert registry["readinessProbe"]["httpGet"]["path"] == "/v2/"
        storage = next(v for v in pod["volumes"] if v["name"] == "storage")
        assert storage == {
            "name": "storage",
            "persistentVolumeClaim": {"claimName": "slipway-registry"},
        }

    def test_its_storage_is_a_claim_of_the_size_and_class_given_kept_on_uninstall(self) -> None:
        docs = render(registry_values({"persistence": {"size": "200Gi", "storageClass": "ssd"}}))
        claim = named(docs, "PersistentVolumeClaim", "slipway-registry")
        assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
        assert claim["spec"]["storageClassName"] == "ssd"
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    def test_without_persistence_it_is_an_empty_dir_and_the_notes_warn_loudly(self) -> None:
        values = registry_values({"persistence": {"enabled": False}})
        docs = render(values)
        claims = [c["metadata"]["name"] for c in of_kind(docs, "PersistentVolumeClaim")]
        assert "slipway-registry" not in claims
        pod = named(docs, "Deployment", "slipway-registry")["spec"]["template"]["spec"]
        storage = next(v for v in pod["volumes"] if v["name"] == "storage")
        assert storage == {"name": "storage", "emptyDir": {}}
        text = notes(values)
        assert "WARNING: the in-cluster registry stores images in an emptyDir" in text
        assert "persistence.enabled=true" in text
        assert "WARNING" not in notes(registry_values())

    def test_the_service_is_cluster_ip_on_port_5000(self) -> None:
        service = named(render(registry_values()), "Service", "slipway-registry")
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["ports"] == [
            {"name": "registry", "port": 5000, "targetPort": "registry", "protocol": "TCP"}
        ]
        deployment = named(render(registry_values()), "Deployment", "slipway-registry")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()


class TestTheNodeProxy:
    def test_every_node_answers_on_host_port_5000_and_hostport_is_all_restricted_refuses(
        self,
    ) -> None:
        docs = render(
            registry_values(
                {"proxy": {"tolerations": [{"operator": "Exists", "effect": "NoSchedule"}]}}
            )
        )
        daemon = named(docs, "DaemonSet", "slipway-registry-proxy")
        pod = daemon["spec"]["template"]["spec"]
        (proxy,) = pod["containers"]
        assert proxy["ports"] == [
            {"name": "registry", "containerPort": 5000, "hostPort": 5000, "protocol": "TCP"}
        ]
        assert restricted_violations(pod) == ["proxy: hostPort"]
        assert not pod.get("hostNetwork")
        assert proxy["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["tolerations"] == [{"operator": "Exists", "effect": "NoSchedule"}]
        assert "/etc/slipway/nginx.conf" in proxy["command"]
        config = next(v for v in pod["volumes"] if v["name"] == "config")
        assert config["configMap"]["name"] == "slipway-registry-proxy"

    def test_the_host_port_is_what_the_release_images_are_pulled_from(self) -> None:
        docs = render(registry_values({"proxy": {"hostPort": 5005}}))
        (proxy,) = named(docs, "DaemonSet", "slipway-registry-proxy")["spec"]["template"]["spec"][
            "containers"
        ]
        assert proxy["ports"][0]["hostPort"] == 5005
        assert env_of(docs, "slipway-control")["SLIPWAY_CNB_PULL_REGISTRY"] == "localhost:5005"

    def test_it_proxies_to_the_registry_service_by_its_cluster_name(self) -> None:
        conf = proxy_conf(render(registry_values()))
        assert f"proxy_pass http://{SERVICE};" in conf


class TestTheBuildWiring:
    def test_builds_push_to_the_service_over_http_without_a_secret_and_apps_pull_localhost(
        self,
    ) -> None:
        docs = render(registry_values())
        env = env_of(docs, "slipway-control")
        assert env["SLIPWAY_CNB_REGISTRY"] == SERVICE
        assert env["SLIPWAY_CNB_PULL_REGISTRY"] == "localhost:5000"
        assert env["SLIPWAY_CNB_INSECURE_REGISTRY"] == "true"
        assert env["SLIPWAY_CNB_REGISTRY_SECRET"] == ""
        # No credentials to pull with either: the agent names no pull Secret.
        assert "SLIPWAY_KUBE_IMAGE_PULL_SECRET" not in env_of(docs, "slipway-agent")

    def test_a_registry_named_by_the_operator_is_pushed_to_instead(self) -> None:
        """E.g. the Service's full name under a cluster domain that is not cluster.local."""
        name = f"slipway-registry.{NAMESPACE}.svc.corp.internal:5000"
        env = env_of(render(registry_values(registry=name)), "slipway-control")
        assert env["SLIPWAY_CNB_REGISTRY"] == name
        assert env["SLIPWAY_CNB_PULL_REGISTRY"] == "localhost:5000"


class TestTheFence:
    def test_build_pods_may_reach_the_registry_on_its_port_and_nothing_more_of_the_platform(
        self,
    ) -> None:
        docs = render(registry_values())
        egress = policies(docs, f"{NAMESPACE}-builds")["slipway-builds-egress"]
        (rule,) = [r for r in egress["egress"] if r.get("ports") == [
            {"protocol": "TCP", "port": 5000}
        ]]  # fmt: skip
        (peer,) = rule["to"]
        assert peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
        }
        registry = named(docs, "Deployment", "slipway-registry")["spec"]["template"]["metadata"]
        assert peer["podSelector"]["matchLabels"].items() <= registry["labels"].items()
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "registry"

    def test_the_build_pod_selector_matches_the_pods_of_the_build_jobs_control_creates(
        self,
    ) -> None:
        docs = render(registry_values())
        (rule,) = policies(docs, NAMESPACE)["slipway-registry"]["ingress"]
        builds = rule["from"][0]
        env = env_of(docs, "slipway-control")
        job = build_job(
            "demo",
            "b1",
            git_url="https://git.test/demo.git",
            commit="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
            settings=CNBSettings(
                namespace=str(env["SLIPWAY_CNB_NAMESPACE"]),
                registry=str(env["SLIPWAY_CNB_REGISTRY"]),
            ),
        )
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert builds["podSelector"]["matchLabels"].items() <= labels.items()
        assert builds["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": job["metadata"]["namespace"]
        }

    def test_the_registry_accepts_build_pods_and_node_proxies_only(self) -> None:
        """Attack: an app pod pushes over another app's image or its build cache, or pulls
        another tenant's image (its source code), straight from the registry's Service."""
        docs = render(registry_values())
        spec = policies(docs, NAMESPACE)["slipway-registry"]
        assert spec["policyTypes"] == ["Ingress"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "registry"
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]
        builds, proxies = rule["from"]
        assert builds["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": f"{NAMESPACE}-builds"}
        }
        assert builds["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "slipway-build"}}
        assert proxies["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
        }
        proxy_pod = named(docs, "DaemonSet", "slipway-registry-proxy")["spec"]["template"]
        assert (
            proxies["podSelector"]["matchLabels"].items() <= proxy_pod["metadata"]["labels"].items()
        )
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            assert ns != f"{NAMESPACE}-apps"

    def test_app_pods_get_no_way_to_the_registry(self) -> None:
        """Attack: an app pod in the apps namespace connects to the registry's pod."""
        docs = render(registry_values())
        apps = policies(docs, f"{NAMESPACE}-apps")["slipway-apps-egress"]
        assert "registry" not in str(apps["egress"])
        assert [
            r for r in apps["egress"] if {"protocol": "TCP", "port": 5000} in r.get("ports", [])
        ] == []


# -- the proxy's nginx config, run by a real nginx ------------------------------------------------


def proxy_conf(docs: list[dict[str, Any]]) -> str:
    conf: str = named(docs, "ConfigMap", "slipway-registry-proxy")["data"]["nginx.conf"]
    return conf


Seen = list[tuple[str, str]]


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[int, Seen]]:
    """A stand-in registry on loopback that records what reached it."""
    seen: Seen = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.path))
        return web.Response(text="layer-bytes")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, seen
    finally:
        await runner.cleanup()


@pytest.fixture
async def proxy(tmp_path: Path, upstream: tuple[int, Seen]) -> AsyncIterator[tuple[str, Seen]]:
    """The rendered nginx.conf run by nginx, pointed at the stand-in registry: only the
    addresses and the scratch directory differ from what the DaemonSet runs."""
    upstream_port, seen = upstream
    port = free_port()
    docs = render(registry_values())
    conf = proxy_conf(docs)
    (container,) = named(docs, "DaemonSet", "slipway-registry-proxy")["spec"]["template"]["spec"][
        "containers"
    ]
    conf = conf.replace(f"http://{SERVICE}", f"http://127.0.0.1:{upstream_port}")
    conf = conf.replace("listen 5000;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("/tmp/", f"{tmp_path}/")
    (tmp_path / "nginx.conf").write_text(conf)
    command = [
        str(tmp_path / "nginx.conf") if arg == "/etc/slipway/nginx.conf" else arg
        for arg in container["command"]
    ]
    assert command[0] == "nginx"
    process = await asyncio.create_subprocess_exec(NGINX, *command[1:], "-p", str(tmp_path))
    try:

        async def listening() -> bool:
            assert process.returncode is None, "nginx exited: the rendered config does not load"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            writer.close()
            await writer.wait_closed()
            return True

        await eventually(listening)
        yield f"http://127.0.0.1:{port}", seen
    finally:
        process.terminate()
        async with asyncio.timeout(10):
            await process.wait()


async def call(url: str, method: str, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.request(method, url + path) as response,
    ):
        return response.status, await response.text()


class TestTheProxyServesPullsOnly:
    async def test_pulls_pass_through_to_the_registry(self, proxy: tuple[str, Seen]) -> None:
        url, seen = proxy
        digest = "sha256:" + "5e" * 32
        assert await call(url, "GET", f"/v2/demo/manifests/{digest}") == (200, "layer-bytes")
        assert (await call(url, "HEAD", f"/v2/demo/blobs/{digest}"))[0] == 200
        assert seen == [
            ("GET", f"/v2/demo/manifests/{digest}"),
            ("HEAD", f"/v2/demo/blobs/{digest}"),
        ]
        assert await call(url, "GET", "/healthz") == (200, "ok\n")

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("PUT", "/v2/other/manifests/latest"),
            ("POST", "/v2/other/blobs/uploads/"),
            ("PATCH", "/v2/other/blobs/uploads/1"),
            ("DELETE", "/v2/other/manifests/sha256:" + "ab" * 32),
        ],
    )
    async def test_a_write_through_a_node_s_port_is_refused_before_the_registry(
        self, proxy: tuple[str, Seen], method: str, path: str
    ) -> None:
        """Attack: whoever reaches a node's port 5000 pushes over another app's image or its
        build cache, or deletes a release's manifest."""
        url, seen = proxy
        assert (await call(url, method, path))[0] == 403
        assert seen == []

    async def test_nothing_but_the_registry_api_is_proxied(self, proxy: tuple[str, Seen]) -> None:
        url, seen = proxy
        assert (await call(url, "GET", "/debug/vars"))[0] == 404
        assert seen == []
