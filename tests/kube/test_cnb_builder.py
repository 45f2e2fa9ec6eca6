"""The Kubernetes builder against the test apiserver; the test plays the Job controller and kubelet.

A real kubernetes-asyncio client over HTTP creates the Job, watches it and
its pod, and follows the containers' logs; the test makes the pod, moves its
containers through waiting, running and terminated (exit status and
termination message), writes their log lines and sets the Job's conditions.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from control.building import Builds
from control.builds.errors import BuildFailed, BuildTimeout, SourceError
from control.builds.kube import KubernetesBuilder
from control.builds.metrics import BuildMetrics
from control.builds.model import Source
from control.builds.settings import CNBSettings
from control.models import BuildStatus
from control.server import build_builds
from control.service import Control
from control.settings import ControlSettings, build_settings_from_env
from control.store.db import Store
from tests.builds.apps import RecordingSink
from tests.control.targets import RecordingTarget
from tests.helpers import eventually
from tests.kube.conftest import make_client
from tests.kube.podlogs import LoggingApiServer

NS = "builds"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"
DIGEST = "sha256:" + "5e" * 32
REGISTRY = "registry.test:5000"
PROCFILE = "web: python app.py\nworker: python worker.py\n"
REPORT = f'[image]\ntags = ["{REGISTRY}/demo:b1"]\ndigest = "{DIGEST}"\nmanifest-size = 1083\n'
FETCH_LINES = ["Cloning into '/workspace'..."]
CREATOR_LINES = [
    "===> ANALYZING",
    'Restoring data for "paketo-buildpacks/pip-install:cache" from cache',
    "===> BUILDING",
    "Paketo Buildpack for CPython 1.13.0",
    "===> EXPORTING",
    f"*** Digest: {DIGEST}",
]
#: Bound on waiting for the builder to react to what the test changed.
REACT = 5.0


@pytest.fixture
async def apiserver() -> AsyncIterator[LoggingApiServer]:
    async with LoggingApiServer() as server, kmock.Server(server):
        yield server


def builder_for(
    server: LoggingApiServer,
    sink: RecordingSink,
    registry: CollectorRegistry,
    timeout: float = 20,
    settings: CNBSettings | None = None,
) -> KubernetesBuilder:
    async def connect() -> client.ApiClient:
        return make_client(server)

    return KubernetesBuilder(
        settings or CNBSettings(namespace=NS, registry=REGISTRY, registry_secret="regcred"),
        sink=sink,
        metrics=BuildMetrics(registry),
        timeout=timeout,
        connect=connect,
    )


class Kubelet:
    """Plays the Job controller and the kubelet for one build Job."""

    def __init__(self, server: LoggingApiServer) -> None:
        self.server = server
        self.job: dict[str, Any] = {}
        self.pod_name = ""

    async def job_created(self) -> dict[str, Any]:
        jobs = await eventually(lambda: self.server.objects_of("jobs"))
        self.job = jobs[0]
        self.pod_name = self.job["metadata"]["name"] + "-x7k2p"
        return self.job

    async def pod(self, init: dict[str, Any], main: dict[str, Any], phase: str) -> None:
        labels = self.job["spec"]["template"]["metadata"]["labels"]
        spec = self.job["spec"]["template"]["spec"]
        await self.server.put(
            "pods",
            {
                "metadata": {
                    "name": self.pod_name,
                    "namespace": NS,
                    "labels": {**labels, "job-name": self.job["metadata"]["name"]},
                },
                "status": {
                    "phase": phase,
                    "initContainerStatuses": [
                        {"name": "fetch-source", "image": spec["initContainers"][0]["image"]} | init
                    ],
                    "containerStatuses": [
                        {"name": "creator", "image": spec["containers"][0]["image"]} | main
                    ],
                },
            },
        )

    def write(self, container: str, *lines: str) -> None:
        self.server.write(NS, self.pod_name, container, *lines)

    def end(self, container: str) -> None:
        self.server.end(NS, self.pod_name, container)

    async def job_condition(self, kind: str, reason: str = "", message: str = "") -> None:
        condition = {"type": kind, "status": "True", "reason": reason, "message": message}
        await self.server.patch_object(
            "jobs",
            NS,
            self.job["metadata"]["name"],
            {"status": {"conditions": [condition]}},
        )

    async def fetch(self, code: int = 0) -> None:
        """fetch-source runs, writes its lines, and ends with the Procfile as its message."""
        self.write("fetch-source")
        await self.pod(RUNNING, INITIALIZING, "Pending")
        self.write("fetch-source", *FETCH_LINES)
        self.end("fetch-source")
        message = PROCFILE if code == 0 else ""
        await self.pod(terminated(code, message), INITIALIZING, "Pending")

    async def creator_runs(self, *lines: str) -> None:
        self.write("creator", *lines)
        await self.pod(terminated(0, PROCFILE), RUNNING, "Running")

    async def creator_ends(self, code: int, report: str) -> None:
        self.end("creator")
        phase = "Succeeded" if code == 0 else "Failed"
        await self.pod(terminated(0, PROCFILE), terminated(code, report), phase)
        await self.job_condition("Complete" if code == 0 else "Failed", "BackoffLimitExceeded")


RUNNING: dict[str, Any] = {"state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}}
INITIALIZING: dict[str, Any] = {"state": {"waiting": {"reason": "PodInitializing"}}}


def terminated(code: int, message: str) -> dict[str, Any]:
    reason = "Completed" if code == 0 else "Error"
    return {"state": {"terminated": {"exitCode": code, "reason": reason, "message": message}}}


async def test_a_build_runs_creator_in_a_job_streams_its_lines_and_returns_the_image_by_digest(
    apiserver: LoggingApiServer,
) -> None:
    sink, registry = RecordingSink(), CollectorRegistry()
    builder = builder_for(apiserver, sink, registry)
    kubelet = Kubelet(apiserver)
    try:
        build = asyncio.create_task(
            builder.build("demo", Source.git("https://git.test/demo.git", SHA), build_id="b1")
        )
        job = await kubelet.job_created()
        pod = job["spec"]["template"]["spec"]
        creator = pod["containers"][0]
        assert job["metadata"]["namespace"] == NS
        assert creator["image"] == "paketobuildpacks/builder-jammy-base"
        assert creator["command"] == ["/cnb/lifecycle/creator"]
        assert f"-cache-image={REGISTRY}/demo:build-cache" in creator["args"]
        assert creator["args"][-1] == f"{REGISTRY}/demo:b1"
        secret = next(v for v in pod["volumes"] if v["name"] == "docker-config")["secret"]
        assert secret["secretName"] == "regcred"

        await kubelet.fetch()
        await kubelet.creator_runs(*CREATOR_LINES[:3])
        # Lines reach the sink while creator still runs, in the order written.
        await eventually(lambda: "       ===> BUILDING" in sink.texts())
        assert not build.done()
        kubelet.write("creator", *CREATOR_LINES[3:])
        await eventually(lambda: f"       *** Digest: {DIGEST}" in sink.texts())
        await kubelet.creator_ends(0, REPORT)
        async with asyncio.timeout(REACT):
            artifact = await build
    finally:
        await builder.close()

    assert artifact.image == f"{REGISTRY}/demo@{DIGEST}"
    assert artifact.reference == artifact.image
    assert artifact.digest == DIGEST
    assert (artifact.commit, artifact.slug) == (SHA, None)
    assert dict(artifact.process_types) == {"web": "python app.py", "worker": "python worker.py"}
    assert artifact.cache_hit
    streamed = [t.strip() for t in sink.texts("demo") if t.startswith("       ")]
    assert streamed == FETCH_LINES + CREATOR_LINES
    assert {line[1:3] for line in sink.lines} == {("build", "build.b1")}
    assert apiserver.deletes == []  # a finished Job stays for its TTL (kubectl logs)
    follow = {(c, p.get("follow")) for _, c, p in apiserver.log_requests}
    assert follow == {("fetch-source", "True"), ("creator", "True")}
    assert (
        registry.get_sample_value(
            "slipway_builds_total", {"stack": "buildpacks", "result": "succeeded"}
        )
        == 1
    )
    assert registry.get_sample_value("slipway_build_cache_total", {"outcome": "hit"}) == 1
    assert (
        registry.get_sample_value("slipway_build_duration_seconds_count", {"result": "succeeded"})
        == 1
    )


async def test_the_digest_comes_from_the_log_when_the_status_lost_the_report(
    apiserver: LoggingApiServer,
) -> None:
    sink, registry = RecordingSink(), CollectorRegistry()
    builder = builder_for(apiserver, sink, registry)
    kubelet = Kubelet(apiserver)
    try:
        build = asyncio.create_task(
            builder.build("demo", Source.git("https://git.test/demo.git", SHA), build_id="b2")
        )
        await kubelet.job_created()
        await kubelet.fetch()
        await kubelet.creator_runs("===> EXPORTING", f"*** Digest: {DIGEST}")
        await kubelet.creator_ends(0, "")
        async with asyncio.timeout(REACT):
            artifact = await build
    finally:
        await builder.close()
    assert artifact.image == f"{REGISTRY}/demo@{DIGEST}"
    assert not artifact.cache_hit
    assert registry.get_sample_value("slipway_build_cache_total", {"outcome": "miss"}) == 1


async def test_an_in_cluster_registry_build_pushes_over_http_and_the_nodes_pull_it_as_localhost(
    apiserver: LoggingApiServer,
) -> None:
    settings = CNBSettings(
        namespace=NS,
        registry=REGISTRY,
        pull_registry="localhost:5000",
        insecure_registry=True,
        registry_secret=None,
    )
    builder = builder_for(apiserver, RecordingSink(), CollectorRegistry(), settings=settings)
    kubelet = Kubelet(apiserver)
    try:
        build = asyncio.create_task(
            builder.build("demo", Source.git("https://git.test/demo.git", SHA), build_id="b3")
        )
        job = await kubelet.job_created()
        creator = job["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "CNB_INSECURE_REGISTRIES", "value": REGISTRY} in creator["env"]
        assert creator["args"][-1] == f"{REGISTRY}/demo:b3"
        await kubelet.fetch()
        await kubelet.creator_runs("===> EXPORTING", f"*** Digest: {DIGEST}")
        await kubelet.creator_ends(0, REPORT)
        async with asyncio.timeout(REACT):
            artifact = await build
    finally:
        await builder.close()
    assert artifact.digest == DIGEST
    assert artifact.image == f"localhost:5000/demo@{DIGEST}"


async def test_a_creator_that_exits_non_zero_fails_the_build_with_the_tail_of_its_output(
    apiserver: LoggingApiServer,
) -> None:
    sink, registry = RecordingSink(), CollectorRegistry()
    builder = builder_for(apiserver, sink, registry)
    kubelet = Kubelet(apiserver)
    try:
        build = asyncio.create_task(
            builder.build("demo", Source.git("https://git.test/demo.git", SHA), build_id="b3")
        )
        await kubelet.job_created()
        await kubelet.fetch()
        await kubelet.creator_runs("===> DETECTING", "ERROR: No buildpack groups passed detection.")
        await kubelet.creator_ends(20, "")
        with pytest.raises(BuildFailed) as failed:
            async with asyncio.timeout(REACT):
                await build
    finally:
        await builder.close()
    assert failed.value.message == "creator failed (exit status 20, Error)"
    assert "ERROR: No buildpack groups passed detection." in failed.value.tail
    assert (
        registry.get_sample_value(
            "slipway_builds_total", {"stack": "buildpacks", "result": "failed"}
        )
        == 1
    )


async def test_a_builder_image_that_cannot_be_pulled_fails_at_once_and_deletes_the_job(
    apiserver: LoggingApiServer,
) -> None:
    builder = builder_for(apiserver, RecordingSink(), CollectorRegistry())
    kubelet = Kubelet(apiserver)
    try:
        build = asyncio.create_task(
            builder.build("demo", Source.git("https://git.test/demo.git", SHA), build_id="b4")
        )
        await kubelet.job_created()
        await kubelet.fetch()
        pull = {"state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": 'Back-off pulling image "paketo"'}}}  # fmt: skip
        await kubelet.pod(terminated(0, PROCFILE), pull, "Pending")
        with pytest.raises(BuildFailed, match="creator cannot start: ImagePullBackOff for "
                           "paketobuildpacks/builder-jammy-base"):  # fmt: skip
            async with asyncio.timeout(REACT):
                await build
    finally:
        await builder.close()
    assert apiserver.deletes == [("jobs", "build-demo-b4", {"propagationPolicy": "Background"})]
    assert apiserver.objects_of("jobs") == []


async def test_a_build_past_its_timeout_is_killed_by_deleting_its_job(
    apiserver: LoggingApiServer,
) -> None:
    registry = CollectorRegistry()
    builder = builder_for(apiserver, RecordingSink(), registry, timeout=1.0)
    kubelet = Kubelet(apiserver)
    try:
        build = asyncio.create_task(
            builder.build("demo", Source.git("https://git.test/demo.git", SHA), build_id="b5")
        )
        await kubelet.job_created()
        await kubelet.fetch()
        await kubelet.creator_runs("===> BUILDING")
        with pytest.raises(BuildTimeout, match="timed out after 1s; its Job was deleted"):
            async with asyncio.timeout(REACT):
                await build
    finally:
        await builder.close()
    assert apiserver.deletes == [("jobs", "build-demo-b5", {"propagationPolicy": "Background"})]
    assert (
        registry.get_sample_value(
            "slipway_builds_total", {"stack": "buildpacks", "result": "timeout"}
        )
        == 1
    )


async def test_a_tenants_inward_source_makes_no_job(apiserver: LoggingApiServer) -> None:
    sink = RecordingSink()
    builder = builder_for(apiserver, sink, CollectorRegistry())
    try:
        source = Source.git("https://169.254.169.254/r.git", SHA, tenant=True)
        with pytest.raises(SourceError, match="inside the platform's network"):
            await builder.build("demo", source, build_id="b9")
    finally:
        await builder.close()
    assert apiserver.objects_of("jobs") == []


async def test_a_tenants_job_fetches_from_the_addresses_checked_only(
    apiserver: LoggingApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "git.test":
            return await real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.9", int(port)))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    builder = builder_for(apiserver, RecordingSink(), CollectorRegistry(), timeout=1.0)
    kubelet = Kubelet(apiserver)
    try:
        source = Source.git("https://git.test/demo.git", SHA, tenant=True)
        build = asyncio.create_task(builder.build("demo", source, build_id="b8"))
        job = await kubelet.job_created()
        with pytest.raises(BuildTimeout):
            async with asyncio.timeout(REACT):
                await build
    finally:
        await builder.close()
    fetch = job["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["GIT_ALLOW_PROTOCOL"] == "https:ssh"
    pins = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(2)}
    assert pins == {
        "http.followRedirects": "false",
        "http.curloptResolve": "git.test:443:203.0.113.9",
    }


async def test_an_unreachable_apiserver_fails_the_build_saying_so(
    apiserver: LoggingApiServer,
) -> None:
    apiserver.outage = True
    builder = builder_for(apiserver, RecordingSink(), CollectorRegistry())
    try:
        with pytest.raises(BuildFailed, match=r"the Kubernetes API is unreachable: .*503"):
            async with asyncio.timeout(REACT):
                await builder.build(
                    "demo", Source.git("https://git.test/demo.git", SHA), build_id="b6"
                )
    finally:
        await builder.close()


async def test_a_job_the_cluster_fails_without_a_pod_status_fails_the_build(
    apiserver: LoggingApiServer,
) -> None:
    builder = builder_for(apiserver, RecordingSink(), CollectorRegistry())
    kubelet = Kubelet(apiserver)
    try:
        build = asyncio.create_task(
            builder.build("demo", Source.git("https://git.test/demo.git", SHA), build_id="b7")
        )
        await kubelet.job_created()
        await kubelet.job_condition(
            "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
        )
        with pytest.raises(BuildFailed, match="DeadlineExceeded: Job was active longer"):
            async with asyncio.timeout(REACT):
                await build
    finally:
        await builder.close()


async def test_through_the_builds_api_a_failed_build_leaves_the_running_release_untouched(
    apiserver: LoggingApiServer, tmp_path: Path
) -> None:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
    target = RecordingTarget()
    control = Control(store=store, target=target)
    await control.start()
    sink = RecordingSink()
    builder = builder_for(apiserver, sink, CollectorRegistry())
    builds = Builds(control, builder=builder, sink=sink)
    try:
        await control.create_app("demo", actor="me")
        source = {"url": "https://git.test/demo.git", "version": SHA}
        kubelet = Kubelet(apiserver)
        first = await builds.create("demo", source, actor="me", tenant=False)
        await kubelet.job_created()
        await kubelet.fetch()
        await kubelet.creator_runs(*CREATOR_LINES)
        await kubelet.creator_ends(0, REPORT)
        async with asyncio.timeout(REACT):
            done = await builds.wait("demo", first.id)
        assert done.status is BuildStatus.SUCCEEDED
        assert done.digest == DIGEST
        (deployed,) = target.deployments
        assert deployed.artifact == f"{REGISTRY}/demo@{DIGEST}"
        assert dict(deployed.processes) == {"web": "python app.py", "worker": "python worker.py"}
        released = (await control.get_app("demo")).current_release

        await apiserver.delete_object("jobs", NS, kubelet.job["metadata"]["name"])
        await apiserver.delete_object("pods", NS, kubelet.pod_name)
        second = await builds.create("demo", source, actor="me", tenant=False)
        await kubelet.job_created()
        await kubelet.fetch()
        await kubelet.creator_runs("ERROR: failed to export: denied: push to registry")
        await kubelet.creator_ends(1, "")
        async with asyncio.timeout(REACT):
            failed = await builds.wait("demo", second.id)
        assert failed.status is BuildStatus.FAILED
        assert "creator failed (exit status 1, Error)" in failed.output
        assert "denied: push to registry" in failed.output
        assert len(target.deployments) == 1
        assert (await control.get_app("demo")).current_release == released
    finally:
        await builds.close()
        await store.close()


async def test_serve_control_builds_on_kubernetes_with_the_app_s_buildpacks_and_leaves_it_on_stop(
    apiserver: LoggingApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real connection path: a kubeconfig naming the test apiserver.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "t", "cluster": {"server": str(apiserver.url).rstrip("/")}}],
                "users": [{"name": "t", "user": {"token": "t"}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
                "current-context": "t",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
    control = Control(store=store, target=RecordingTarget())
    await control.start()
    builds_settings = build_settings_from_env(
        {"SLIPWAY_BUILDER": "kubernetes", "SLIPWAY_CNB_NAMESPACE": NS}
    )
    settings = ControlSettings(builds=builds_settings)
    builds = build_builds(control, settings, sink=RecordingSink(), registry=CollectorRegistry())
    assert builds is not None
    try:
        await control.create_app("demo", actor="me")
        await control.update_config(
            "demo", {"BUILDPACKS": "paketo-buildpacks/python@2.1.0, paketo-buildpacks/procfile"},
            actor="me",
        )  # fmt: skip
        source = {"url": "https://git.test/demo.git", "version": SHA}
        build = await builds.create("demo", source, actor="me", tenant=False)
        job = await Kubelet(apiserver).job_created()
        pod = job["spec"]["template"]["spec"]
        assert "-order=/layers/order.toml" in pod["containers"][0]["args"]
        env = {e["name"]: e["value"] for e in pod["initContainers"][0]["env"]}
        assert 'id = "paketo-buildpacks/procfile"' in env["ORDER_TOML"]
        assert job["spec"]["activeDeadlineSeconds"] == 900
    finally:
        await builds.close()  # stops following the build in flight
        await store.close()
    # The Job runs on (bounded by its activeDeadlineSeconds) for the next control plane.
    assert build.status is BuildStatus.PENDING
    assert apiserver.deletes == []
    assert [j["metadata"]["name"] for j in apiserver.objects_of("jobs")] == [
        job["metadata"]["name"]
    ]


async def test_without_kubernetes_credentials_the_build_fails_saying_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    builder = KubernetesBuilder(
        CNBSettings(), sink=RecordingSink(), metrics=BuildMetrics(CollectorRegistry()), timeout=5
    )
    with pytest.raises(
        BuildFailed, match="no Kubernetes API to build with: cannot load kubeconfig"
    ):
        await builder.build("demo", Source.git("https://git.test/demo.git", SHA))
    await builder.close()


async def test_watches_cut_mid_build_resume_and_the_build_still_ends(
    apiserver: LoggingApiServer,
) -> None:
    builder = builder_for(apiserver, RecordingSink(), CollectorRegistry())
    kubelet = Kubelet(apiserver)
    try:
        build = asyncio.create_task(
            builder.build("demo", Source.git("https://git.test/demo.git", SHA), build_id="b8")
        )
        await kubelet.job_created()
        await kubelet.fetch()
        await eventually(lambda: len(apiserver.watch_requests) >= 2)
        await apiserver.drop_watches()
        # Both watches come back (after their first 0.5 s back-off) before anything changes.
        await eventually(lambda: len(apiserver.watch_requests) >= 4)
        await kubelet.creator_runs(*CREATOR_LINES)
        await kubelet.creator_ends(0, REPORT)
        async with asyncio.timeout(REACT):
            artifact = await build
    finally:
        await builder.close()
    assert artifact.image == f"{REGISTRY}/demo@{DIGEST}"
    # Each was opened again from the version it had seen: no relist, no event missed.
    assert all(w.get("resourceVersion") for w in apiserver.watch_requests)
