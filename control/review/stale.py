"""Destroying review apps nobody pushed to for ``stale_after_days``: a named long-lived task.

Each tick reads the pipeline's review apps and when each was last built (a
build per push; an app never built counts from its creation), asks the pure
``plan_stale`` what to destroy, and hands that plan to ``ReviewApps``. Each
app's ``pr-predestroy`` comes from its record (app.json's as last deployed),
so it runs even after a restart, and when the branch is gone.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Protocol

from control.building import Builds
from control.review.appjson import EMPTY, ReviewConfig
from control.review.plan import Pipeline, Plan, plan_stale
from control.review.records import ReviewRecords

log = logging.getLogger(__name__)

#: Seconds between looks: staleness is counted in days, an hour's lag is nothing.
STALE_INTERVAL = 3600.0
#: Apps read per page.
PAGE = 200


class ReviewApps(Protocol):
    """Whatever carries plans out (``DeliveryRunner``, or ``ControlReviewApps`` alone)."""

    async def apply(self, plan: Plan) -> None: ...


class StaleReviewApps:
    def __init__(
        self,
        builds: Builds,
        review_apps: ReviewApps,
        *,
        pipeline: Pipeline,
        records: ReviewRecords | None = None,
        interval: float = STALE_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._records = records
        self._builds = builds
        self._review_apps = review_apps
        self._pipeline = pipeline
        self._interval = interval
        self._clock = clock
        self._name = re.compile(rf"^{re.escape(pipeline.name)}-pr-([1-9][0-9]*)$")

    async def last_pushes(self) -> dict[int, float]:
        """PR number -> when its review app was last built (or made)."""
        control = self._builds.control
        built = await self._builds.last_built()
        found: dict[int, float] = {}
        after: str | None = None
        while True:
            page = await control.list_apps(after=after, limit=PAGE)
            for app in page:
                match = self._name.match(app.name)
                if match is not None:
                    found[int(match.group(1))] = built.get(app.name, app.created_at)
            if len(page) < PAGE:
                return found
            after = page[-1].name

    async def configs(self) -> dict[int, ReviewConfig]:
        """PR number -> what app.json said at the last deploy, as far as destroying needs."""
        if self._records is None:
            return {}
        found: dict[int, ReviewConfig] = {}
        for app, command in (await self._records.predestroys()).items():
            match = self._name.match(app)
            if match is not None:
                found[int(match.group(1))] = ReviewConfig(
                    env=EMPTY.env, addons=(), postdeploy=None, predestroy=command
                )
        return found

    async def tick(self) -> Plan:
        plan = plan_stale(
            await self.last_pushes(),
            pipeline=self._pipeline,
            now=self._clock(),
            configs=await self.configs(),
        )
        if plan.actions:
            log.info("stale review apps", extra={"plan": plan.summary})
            await self._review_apps.apply(plan)
        return plan

    async def run(self) -> None:
        """Start as a named task (TaskSet); a failed look is logged and retried next time."""
        while True:
            try:
                await self.tick()
            except Exception as exc:
                log.error("looking for stale review apps failed", extra={"error": str(exc)})
            await asyncio.sleep(self._interval)
