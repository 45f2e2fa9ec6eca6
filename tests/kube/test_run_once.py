"""KubernetesRuntime.run_once against kmock+shim: the test plays the Job controller and kubelet.

A one-off process (the release phase) is a Job of the release's image, run
through the CNB launcher with the release's env Secret; the agent watches it
to its end and reads its pod's log tail; on timeout it deletes the Job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
from prometheus_client import CollectorRegistry

from agent.kubernetes import manifests
from agent.kubernetes import runtime as kube_runtime
from agent.kubernetes.runtime import KubernetesRuntime
from agent.kubernetes.settings import KubeSettings
from agent.runtime import OnceResult, ProcessSpec
from tests.helpers import eventually
from tests.kube.conftest import NAMESPACE, make_client
from tests.kube.podlogs import LoggingApiServer

SPEC = ProcessSpec(
    app="blog",
    process="release",
    command="python manage.py migrate",
    image="registry.test/blog@sha256:abc",
    release=4,
    env={"DATABASE_URL": "postgres://blog@db/blog"},
)


@pytest.fixture
async def apiserver() -> AsyncIterator[LoggingApiServer]:
    async with LoggingApiServer() as server, kmock.Server(server):
        yield server


@pytest.fixture
async def runtime(apiserver: LoggingApiServer) -> AsyncIterator[KubernetesRuntime]:
    async with make_client(apiserver) as api:
        rt = KubernetesRuntime(
            api,
            settings=KubeSettings(namespace=NAMESPACE, image_pull_secret="regcred"),
            registry=CollectorRegistry(),
        )
        yield rt
        await rt.close()


class JobController:
    """Plays the Job controller and the kubelet for the one Job the runtime creates."""

    def __init__(self, server: LoggingApiServer) -> None:
        self.server = server
        self.job: dict[str, Any] = {}

    @property
    def pod_name(self) -> str:
        return str(self.job["metadata"]["name"]) + "-q8z4m"

    async def created(self) -> dict[str, Any]:
        self.job = (await eventually(lambda: self.server.objects_of("jobs")))[0]
        return self.job

    async def run(self, *lines: str, code: int | None) -> None:
        """The pod runs, writes ``lines``; with a code it ends and the Job says how."""
        template = self.job["spec"]["template"]
        await self.server.put(
            "pods",
            {
                "metadata": {
                    "name": self.pod_name,
                    "namespace": NAMESPACE,
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                    "labels": {**template["metadata"]["labels"], "job-name": self.job_name},
                },
                "status": {"phase": "Running" if code is None else "Failed"},
            },
        )
        self.server.write(NAMESPACE, self.pod_name, "release", *lines)
        if code is None:
            return
        self.server.end(NAMESPACE, self.pod_name, "release")
        kind, reason = ("Complete", "") if code == 0 else ("Failed", "BackoffLimitExceeded")
        await self.condition(kind, reason, "Job has reached the specified backoff limit")

    @property
    def job_name(self) -> str:
        return str(self.job["metadata"]["name"])

    async def condition(self, kind: str, reason: str, message: str = "") -> None:
        condition = {"type": kind, "status": "True", "reason": reason, "message": message}
        await self.server.patch_object(
            "jobs", NAMESPACE, self.job_name, {"status": {"conditions": [condition]}}
        )


async def test_a_release_command_is_a_job_of_the_image_with_the_release_secret(
    runtime: KubernetesRuntime, apiserver: LoggingApiServer
) -> None:
    jobs = JobController(apiserver)
    run = asyncio.create_task(runtime.run_once(SPEC, "python manage.py migrate", timeout=120))
    job = await jobs.created()
    name = job["metadata"]["name"]
    assert name.startswith("blog-run-v4-")
    assert len(name) == len("blog-run-v4-") + 6
    labels = job["metadata"]["labels"]
    assert labels[manifests.APP_LABEL] == "blog"
    assert labels[manifests.PROCESS_LABEL] == "release"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 120
    assert spec["ttlSecondsAfterFinished"] == manifests.RUN_TTL
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    (container,) = pod["containers"]
    assert container["image"] == SPEC.image
    assert container["command"] == ["/cnb/lifecycle/launcher"]
    assert container["args"] == ["python manage.py migrate"]
    assert container["envFrom"] == [{"secretRef": {"name": "blog-env-v4"}}]
    # Its pods carry the app's labels so Fluent Bit ships their output to the app's stream as
    # release lines, yet they are not instances of a process type: key_of leaves them out.
    pod_labels = spec["template"]["metadata"]["labels"]
    assert pod_labels[manifests.APP_LABEL] == "blog"
    assert pod_labels[manifests.SOURCE_LABEL] == "release"
    assert manifests.key_of({"metadata": {"labels": pod_labels}}) is None
    # The release's Secret exists before the Job that needs it, with its config vars.
    secret = apiserver.get("secrets", NAMESPACE, "blog-env-v4")
    assert secret is not None
    assert secret["stringData"] == {"DATABASE_URL": SPEC.env["DATABASE_URL"]}

    await jobs.run("Applying migrations...", "OK", code=0)
    result = await asyncio.wait_for(run, 10)
    assert result == OnceResult(ok=True, output="Applying migrations...\nOK\n")
    assert apiserver.get("jobs", NAMESPACE, name) is not None  # its TTL cleans it up
    assert not any(plural == "jobs" for plural, _, _ in apiserver.deletes)


async def test_a_failing_command_reports_its_log_tail(
    runtime: KubernetesRuntime, apiserver: LoggingApiServer
) -> None:
    jobs = JobController(apiserver)
    run = asyncio.create_task(runtime.run_once(SPEC, "rake db:migrate", timeout=60))
    await jobs.created()
    await jobs.run(*(f"line {i}" for i in range(2000)), "relation users already exists", code=1)
    result = await asyncio.wait_for(run, 10)
    assert not result.ok
    assert "relation users already exists" in result.output
    assert "BackoffLimitExceeded" in result.output
    assert len(result.output) < 4200  # the tail, bounded like a local run's
    assert "line 0\n" not in result.output


async def test_a_job_past_its_deadline_is_reported_and_deleted(
    runtime: KubernetesRuntime, apiserver: LoggingApiServer
) -> None:
    jobs = JobController(apiserver)
    run = asyncio.create_task(runtime.run_once(SPEC, "sleep 1000", timeout=30))
    await jobs.created()
    await jobs.run("still migrating", code=None)
    await jobs.condition("Failed", "DeadlineExceeded", "Job was active longer than specified")
    result = await asyncio.wait_for(run, 10)
    assert not result.ok
    assert "still migrating" in result.output
    assert "timed out after 30s" in result.output
    assert ("jobs", jobs.job_name, {"propagationPolicy": "Background"}) in [
        (p, n, {k: v for k, v in q.items() if k == "propagationPolicy"})
        for p, n, q in apiserver.deletes
    ]
    assert apiserver.get("jobs", NAMESPACE, jobs.job_name) is None


async def test_the_agent_stops_waiting_when_the_job_never_ends_and_deletes_it(
    runtime: KubernetesRuntime, apiserver: LoggingApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Job controller that never marks the deadline (or a lost watch): the agent's backstop."""
    monkeypatch.setattr(kube_runtime, "RUN_GRACE", 0.3)
    jobs = JobController(apiserver)
    run = asyncio.create_task(runtime.run_once(SPEC, "sleep 1000", timeout=0.2))
    await jobs.created()
    result = await asyncio.wait_for(run, 10)
    assert not result.ok
    assert "timed out after 0.2s" in result.output
    assert "no pod ran" in result.output
    assert apiserver.get("jobs", NAMESPACE, jobs.job_name) is None


async def test_a_release_without_an_image_is_refused_before_anything_is_written(
    runtime: KubernetesRuntime, apiserver: LoggingApiServer
) -> None:
    result = await runtime.run_once(
        ProcessSpec(app="blog", process="release", command="x", release=4), "x", timeout=10
    )
    assert not result.ok
    assert "an image is required" in result.output
    assert apiserver.objects_of("jobs") == []
    assert apiserver.objects_of("secrets") == []
