"""``ReviewApps`` over the control plane: a plan's actions become apps, add-ons, builds, releases.

``apply`` returns at once (the webhook answers GitHub within its 10 s) and
the plan runs in the background, chained per app: a push that arrives while
the app's first build runs waits for it, so a review app's events take
effect in the order they came. A failed step stops the rest of that plan
(no release after a failed build, no postdeploy after a failed release) and
is logged; the next push tries again.

EnsureApp makes the app once: config vars from app.json (``generator:
secret`` ones generated here), add-ons from the real provisioners, and the
review host as a domain. An existing app keeps its config (someone may have
changed it on purpose); only its domain is re-asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from control.building import Builds
from control.builds.model import LogSink
from control.errors import ControlError, NotFound
from control.models import Build, BuildStatus, ReleaseStatus
from control.review.appjson import Generated
from control.review.plan import (
    Action,
    DestroyApp,
    EnsureApp,
    Plan,
    Release,
    RunOnce,
)
from control.review.plan import (
    Build as BuildAction,
)
from control.service import Control

log = logging.getLogger(__name__)

#: Who review-app changes are recorded as in the audit log.
ACTOR = "github"
#: Bytes of random in a generated secret (hex doubles it): as Heroku's generator.
SECRET_BYTES = 32


class StepFailed(Exception):
    """A step of a plan failed; the rest of that app's plan is skipped."""


@dataclass
class _Progress:
    """What one app's run of a plan learnt so far."""

    idle_after: float | None = None
    build: Build | None = None


class ControlReviewApps:
    def __init__(
        self,
        control: Control,
        builds: Builds,
        *,
        sink: LogSink,
        actor: str = ACTOR,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.control = control
        self.builds = builds
        self._sink = sink
        self._actor = actor
        self._chains: dict[str, asyncio.Task[None]] = {}

    async def apply(self, plan: Plan) -> None:
        by_app: dict[str, list[Action]] = {}
        for action in plan.actions:
            by_app.setdefault(action.app, []).append(action)
        for app, actions in by_app.items():
            previous = self._chains.get(app)
            task = asyncio.create_task(
                self._after(previous, app, actions, plan.summary), name=f"review-{app}"
            )
            self._chains[app] = task
            task.add_done_callback(functools.partial(self._forget, app))

    def _forget(self, app: str, done: asyncio.Task[None]) -> None:
        if self._chains.get(app) is done:
            del self._chains[app]

    async def idle(self) -> None:
        """Wait until every plan applied so far has run (tests, and a clean stop)."""
        while self._chains:
            await asyncio.gather(*self._chains.values(), return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._chains.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _after(
        self,
        previous: asyncio.Task[None] | None,
        app: str,
        actions: list[Action],
        summary: str,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        log.info("review plan started", extra={"app": app, "plan": summary})
        progress = _Progress()
        for action in actions:
            try:
                await self._step(action, progress)
            except (StepFailed, ControlError) as exc:
                log.error(
                    "review plan stopped",
                    extra={"app": app, "step": type(action).__name__, "error": str(exc)},
                )
                return
        log.info("review plan done", extra={"app": app, "plan": summary})

    async def _step(self, action: Action, progress: _Progress) -> None:
        if isinstance(action, EnsureApp):
            await self._ensure(action)
            progress.idle_after = action.idle_after
        elif isinstance(action, BuildAction):
            build = await self.builds.create(
                action.app, {"url": action.git_url, "version": action.commit}, actor=self._actor
            )
            progress.build = await self.builds.wait(action.app, build.id)
            if progress.build.status is not BuildStatus.SUCCEEDED:
                raise StepFailed(f"build {build.id} failed: {progress.build.output[:500]}")
        elif isinstance(action, Release):
            await self._released(action.app, progress)
        elif isinstance(action, RunOnce):
            result = await self.control.run_once(
                action.app, action.command, reason=action.reason, actor=self._actor
            )
            for line in result.output.splitlines():
                self._sink.publish(action.app, "release", action.reason, line, self._clock())
            if not result.ok:
                # pr-predestroy failing must not keep the app alive; postdeploy's is reported.
                log.warning(
                    "one-off command failed", extra={"app": action.app, "reason": action.reason}
                )
        elif isinstance(action, DestroyApp):
            # Already gone is fine: a duplicate close, or destroyed as stale.
            with contextlib.suppress(NotFound):
                await self.control.delete_app(action.app, actor=self._actor)

    async def _ensure(self, action: EnsureApp) -> None:
        try:
            await self.control.get_app(action.app)
        except NotFound:
            await self._create(action)
        hosts = {d.hostname for d in await self.control.list_domains(action.app)}
        if action.host not in hosts:
            await self.control.add_domain(action.app, action.host, actor=self._actor)

    async def _create(self, action: EnsureApp) -> None:
        await self.control.create_app(action.app, actor=self._actor)
        env = _values(action.env)
        if env:
            await self.control.update_config(action.app, dict(env), actor=self._actor)
        for addon in action.addons:
            plan = addon.kind.value if addon.plan is None else f"{addon.kind.value}:{addon.plan}"
            await self.control.create_addon(
                action.app, plan=plan, attachment=addon.alias, actor=self._actor
            )

    async def _released(self, app: str, progress: _Progress) -> None:
        build = progress.build
        if build is None:
            raise StepFailed("nothing built to release")
        if build.release is None or build.release_status is not ReleaseStatus.SUCCEEDED:
            raise StepFailed(f"the release of build {build.id} failed")
        if progress.idle_after is None:
            return
        idle = progress.idle_after
        updates = [
            {"type": f.type, "idle_after": idle}
            for f in await self.control.formation(app)
            if f.idle_after != idle
        ]
        if updates:
            await self.control.update_formation(app, updates, actor=self._actor)


def _values(env: Mapping[str, str | Generated]) -> dict[str, str]:
    return {
        key: value if isinstance(value, str) else secrets.token_hex(SECRET_BYTES)
        for key, value in env.items()
    }
