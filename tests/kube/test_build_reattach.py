"""A restarted control plane follows the build Jobs still running instead of failing their builds.

The test apiserver (kmock and the shim) outlives two control planes over one
state store: the first starts a build and stops mid-build (its Job keeps
running), the second finds the pending build's Job by its labels, follows it
to its end and releases it. The test plays the Job controller and kubelet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from control.building import INTERRUPTED, Builds
from control.models import BuildStatus
from control.service import Control
from control.store.db import Store
from tests.builds.apps import RecordingSink
from tests.control.targets import RecordingTarget
from tests.kube.podlogs import LoggingApiServer
from tests.kube.test_cnb_builder import (
    CREATOR_LINES,
    DIGEST,
    FETCH_LINES,
    NS,
    REACT,
    REGISTRY,
    REPORT,
    SHA,
    Kubelet,
    apiserver,
    builder_for,
    eventually,
)

__all__ = ["apiserver"]  # the fixture, shared with the builder's own tests

SOURCE = {"url": "https://git.test/demo.git", "version": SHA}


@dataclass
class Plane:
    """One control plane's life: its store, its builds and what it deployed."""

    store: Store
    control: Control
    builds: Builds
    target: RecordingTarget
    sink: RecordingSink

    async def stop(self) -> None:
        await self.builds.close()
        await self.store.close()


async def start_plane(
    apiserver: LoggingApiServer,
    db: str,
    *,
    timeout: float = 20,
    clock: Callable[[], float] = time.time,
) -> Plane:
    store = Store.open(db)
    target = RecordingTarget()
    control = Control(store=store, target=target)
    # As ControlServer does with a builder: pending builds are left for Builds.resume.
    await control.start(fail_builds=False)
    sink = RecordingSink()
    builder = builder_for(apiserver, sink, CollectorRegistry(), timeout=timeout)
    builds = Builds(control, builder=builder, sink=sink, clock=clock)
    await builds.resume()
    return Plane(store, control, builds, target, sink)


@pytest.fixture
async def first(apiserver: LoggingApiServer, tmp_path: Path) -> AsyncIterator[Plane]:
    plane = await start_plane(apiserver, f"sqlite+aiosqlite:///{tmp_path}/state.db")
    await plane.control.create_app("demo", actor="me")
    yield plane
    await plane.stop()  # harmless when the test stopped it already


async def test_a_build_running_across_a_restart_is_followed_to_its_release(
    apiserver: LoggingApiServer, first: Plane, tmp_path: Path
) -> None:
    """Was: the restarted control plane marked the build failed while its Job went on."""
    kubelet = Kubelet(apiserver)
    build = await first.builds.create("demo", SOURCE, actor="me", tenant=False)
    await kubelet.job_created()
    await kubelet.fetch()
    await kubelet.creator_runs(*CREATOR_LINES[:3])
    await eventually(lambda: "       ===> BUILDING" in first.sink.texts())
    await first.stop()
    assert apiserver.deletes == []  # the Job was left running

    second = await start_plane(apiserver, f"sqlite+aiosqlite:///{tmp_path}/state.db")
    try:
        # It follows the log again from its start: what was written while no one followed.
        await eventually(lambda: "       ===> BUILDING" in second.sink.texts())
        kubelet.write("creator", *CREATOR_LINES[3:])
        await kubelet.creator_ends(0, REPORT)
        async with asyncio.timeout(REACT):
            done = await second.builds.wait("demo", build.id)
    finally:
        await second.stop()

    assert done.status is BuildStatus.SUCCEEDED
    assert done.digest == DIGEST
    (deployed,) = second.target.deployments
    assert deployed.artifact == f"{REGISTRY}/demo@{DIGEST}"
    texts = second.sink.texts("demo")
    assert f"-----> Following Job {kubelet.job['metadata']['name']} again after a restart" in texts
    assert f"       *** Digest: {DIGEST}" in texts
    assert apiserver.deletes == []
    assert len(apiserver.objects_of("jobs")) == 1  # one Job for the build, never a second


async def test_a_failure_after_the_restart_fails_the_build_with_its_output(
    apiserver: LoggingApiServer, first: Plane, tmp_path: Path
) -> None:
    kubelet = Kubelet(apiserver)
    build = await first.builds.create("demo", SOURCE, actor="me", tenant=False)
    await kubelet.job_created()
    await kubelet.fetch()
    await eventually(lambda: f"       {FETCH_LINES[0]}" in first.sink.texts())
    await first.stop()

    second = await start_plane(apiserver, f"sqlite+aiosqlite:///{tmp_path}/state.db")
    try:
        await kubelet.creator_runs("ERROR: failed to export: denied: push to registry")
        await kubelet.creator_ends(1, "")
        async with asyncio.timeout(REACT):
            failed = await second.builds.wait("demo", build.id)
    finally:
        await second.stop()
    assert failed.status is BuildStatus.FAILED
    assert "denied: push to registry" in failed.output
    assert second.target.deployments == []


async def test_a_build_whose_job_is_gone_after_the_restart_fails_saying_so(
    apiserver: LoggingApiServer, first: Plane, tmp_path: Path
) -> None:
    kubelet = Kubelet(apiserver)
    build = await first.builds.create("demo", SOURCE, actor="me", tenant=False)
    job = await kubelet.job_created()
    await first.stop()
    await apiserver.delete_object("jobs", NS, job["metadata"]["name"])

    second = await start_plane(apiserver, f"sqlite+aiosqlite:///{tmp_path}/state.db")
    try:
        async with asyncio.timeout(REACT):
            failed = await second.builds.wait("demo", build.id)
    finally:
        await second.stop()
    assert failed.status is BuildStatus.FAILED
    assert "the control plane restarted and the build Job is gone; build again" in failed.output


async def test_a_build_past_its_timeout_while_no_one_followed_it_is_killed_at_once(
    apiserver: LoggingApiServer, tmp_path: Path
) -> None:
    """The timeout counts from the build's start, not from the restart."""
    db = f"sqlite+aiosqlite:///{tmp_path}/state.db"
    plane = await start_plane(apiserver, db, timeout=1.0)
    await plane.control.create_app("demo", actor="me")
    kubelet = Kubelet(apiserver)
    build = await plane.builds.create("demo", SOURCE, actor="me", tenant=False)
    job = await kubelet.job_created()
    await plane.stop()

    # The next control plane starts 2 s later: longer than the build may take.
    second = await start_plane(apiserver, db, timeout=1.0, clock=lambda: time.time() + 2)
    try:
        async with asyncio.timeout(REACT):
            failed = await second.builds.wait("demo", build.id)
    finally:
        await second.stop()
    assert failed.status is BuildStatus.FAILED
    assert "timed out after 1s" in failed.output
    assert apiserver.deletes == [
        ("jobs", job["metadata"]["name"], {"propagationPolicy": "Background"})
    ]


async def test_a_builder_whose_builds_die_with_the_process_fails_them_at_resume(
    tmp_path: Path,
) -> None:
    """The local builder's processes end with the control plane: nothing to follow."""
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
    try:
        control = Control(store=store, target=RecordingTarget())
        await control.start(fail_builds=False)
        await control.create_app("demo", actor="me")
        async with store.tx() as tx:
            await tx.add_build(
                await tx.get_app("demo"), build_id="b9", source_url="https://git.test/demo.git",
                source_version=SHA, actor="me", now=1.0,
            )  # fmt: skip
        builds = Builds(control, builder=None, sink=RecordingSink())
        assert await builds.resume() == 1
        failed = await builds.get("demo", "b9")
    finally:
        await store.close()
    assert (failed.status, failed.output) == (BuildStatus.FAILED, INTERRUPTED)
