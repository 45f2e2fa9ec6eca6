"""Stale review apps: no push for ``stale_after_days`` -> destroyed, on an injected clock."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from control.building import Builds
from control.review.apply import ControlReviewApps
from control.review.deliveries import DeliveryRunner
from control.review.plan import DestroyApp, Pipeline, Plan, RunOnce
from control.review.records import ReviewRecords, ReviewState
from control.review.source import GitAppJson
from control.review.stale import StaleReviewApps
from control.service import Control
from control.store.db import Store
from tests.builds.apps import RecordingSink
from tests.control.targets import RecordingTarget

DAY = 86400.0
PIPELINE = Pipeline(name="shop", domain="review.test", staging_app="shop-staging")


@dataclass
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class RecordingReviewApps:
    plans: list[Plan] = field(default_factory=list)

    async def apply(self, plan: Plan) -> None:
        self.plans.append(plan)


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[tuple[Control, Builds, Clock]]:
    clock = Clock()
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
    control = Control(store=store, target=RecordingTarget(), clock=clock)
    await control.start()
    try:
        yield control, Builds(control, builder=None, sink=RecordingSink(), clock=clock), clock
    finally:
        await store.close()


async def built(control: Control, app: str, *, at: float) -> None:
    async with control.store.tx() as tx:
        await tx.add_build(
            await tx.get_app(app), build_id=secrets.token_hex(6), source_url="x",
            source_version="abcdef0", actor="github", now=at,
        )  # fmt: skip


class TestStaleness:
    async def test_only_review_apps_quiet_past_the_limit_are_destroyed(
        self, control: tuple[Control, Builds, Clock]
    ) -> None:
        service, builds, clock = control
        for name in ("shop-pr-1", "shop-pr-2", "shop-pr-3", "shop-staging", "other-pr-4"):
            await service.create_app(name, actor="me")
        await built(service, "shop-pr-1", at=clock.now + 1 * DAY)  # pushed, then quiet
        await built(service, "shop-pr-2", at=clock.now + 1 * DAY)
        await built(service, "shop-pr-2", at=clock.now + 5 * DAY)  # pushed again since
        clock.now += 6.5 * DAY  # pr-3 was never built: it counts from its creation
        recorder = RecordingReviewApps()
        stale = StaleReviewApps(builds, recorder, pipeline=PIPELINE, clock=clock)

        assert await stale.last_pushes() == {
            1: 1_000_000.0 + DAY,
            2: 1_000_000.0 + 5 * DAY,
            3: 1_000_000.0,
        }
        plan = await stale.tick()
        assert plan.actions == (DestroyApp("shop-pr-1"), DestroyApp("shop-pr-3"))
        assert recorder.plans == [plan]

    async def test_nothing_stale_applies_nothing(
        self, control: tuple[Control, Builds, Clock]
    ) -> None:
        service, builds, clock = control
        await service.create_app("shop-pr-1", actor="me")
        clock.now += 4 * DAY
        recorder = RecordingReviewApps()
        plan = await StaleReviewApps(builds, recorder, pipeline=PIPELINE, clock=clock).tick()
        assert (plan.actions, recorder.plans) == ((), [])

    async def test_the_task_destroys_stale_apps_through_the_control_plane(
        self, control: tuple[Control, Builds, Clock]
    ) -> None:
        service, builds, clock = control
        await service.create_app("shop-pr-9", actor="me")
        clock.now += 10 * DAY
        review = ControlReviewApps(service, builds, sink=RecordingSink(), clock=clock)
        stale = StaleReviewApps(builds, review, pipeline=PIPELINE, interval=0.01, clock=clock)
        task = asyncio.create_task(stale.run(), name="review-stale")
        try:
            async with asyncio.timeout(10):
                while await service.list_apps(after=None, limit=10):
                    await asyncio.sleep(0.01)
                await review.idle()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        audit = await service.audit(app=None, after=None, limit=50)
        assert [(e.action, e.actor, e.app) for e in audit][-1] == (
            "app.delete",
            "github",
            "shop-pr-9",
        )


class TestPredestroyOfStaleApps:
    async def test_a_stale_app_runs_the_predestroy_recorded_before_a_restart(
        self, control: tuple[Control, Builds, Clock], tmp_path: Path
    ) -> None:
        """Was: stale apps were destroyed without pr-predestroy (no app.json at hand)."""
        service, _, clock = control
        await service.create_app("shop-pr-1", actor="me")
        await service.create_app("shop-pr-2", actor="me")
        await ReviewRecords(service.store).set_status(
            "shop-pr-1", ReviewState.DEPLOYED, "deployed", predestroy="python dump.py",
            now=clock.now,
        )  # fmt: skip
        # The control plane restarts: a fresh store, control plane and scheduler.
        store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
        try:
            again = Control(store=store, target=RecordingTarget(), clock=clock)
            await again.start()
            clock.now += 10 * DAY
            recorder = RecordingReviewApps()
            stale = StaleReviewApps(
                Builds(again, builder=None, sink=RecordingSink(), clock=clock),
                recorder,
                pipeline=PIPELINE,
                records=ReviewRecords(store),
                clock=clock,
            )
            plan = await stale.tick()
        finally:
            await store.close()
        assert plan.actions == (
            RunOnce("shop-pr-1", "python dump.py", "pr-predestroy"),
            DestroyApp("shop-pr-1"),
            DestroyApp("shop-pr-2"),
        )

    async def test_the_task_runs_the_recorded_predestroy_destroys_and_records_it(
        self, control: tuple[Control, Builds, Clock]
    ) -> None:
        service, builds, clock = control
        await service.create_app("shop-pr-3", actor="me")
        records = ReviewRecords(service.store)
        await records.set_status(
            "shop-pr-3", ReviewState.DEPLOYED, "deployed", predestroy="echo bye", now=clock.now
        )
        clock.now += 10 * DAY
        sink = RecordingSink()
        review = ControlReviewApps(service, builds, sink=sink, clock=clock)
        runner = DeliveryRunner(
            review, records, pipeline=PIPELINE, app_json=GitAppJson(), sink=sink, clock=clock
        )
        stale = StaleReviewApps(
            builds, runner, pipeline=PIPELINE, records=records, interval=0.01, clock=clock
        )
        task = asyncio.create_task(stale.run(), name="review-stale")
        try:
            async with asyncio.timeout(10):
                while await service.list_apps(after=None, limit=10):
                    await asyncio.sleep(0.01)
                await review.idle()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        recorded = await records.status("shop-pr-3")
        assert recorded is not None
        assert recorded.state is ReviewState.DESTROYED
        assert recorded.reason == "stale after 5 days: shop-pr-3: done"
        assert ("shop-pr-3", "release", "pr-predestroy", "bye") in [x[:4] for x in sink.lines]
        assert ("shop-pr-3", "release", "review") in [line[:3] for line in sink.lines]
