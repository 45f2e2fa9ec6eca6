"""``ReviewApps`` over the control plane: a plan's actions become apps, add-ons, builds, releases.

``apply`` (and ``enqueue``, for a delivery's whole handling) returns at once
and the work runs in the background, chained per app: a push that arrives
while the app's first build runs waits for it, so a review app's events take
effect in the order they came. A failed step stops the rest of that plan (no
release after a failed build, no postdeploy after a failed release); ``run``
returns that as an ``Outcome``, which ``deliveries`` makes visible.

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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from control.building import Builds
from control.builds.model import LogSink
from control.errors import ControlError, NotFound
from control.models import Build, BuildStatus, ReleaseStatus
from control.requests import FormationChange
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
from control.rules import (
    validate_app_name,
    validate_attachment,
    validate_config_changes,
    validate_hostname,
)
from control.service import Control
from kit.redact import mask_text

log = logging.getLogger(__name__)

#: Who review-app changes are recorded as in the audit log.
ACTOR = "github"
#: The RunOnce reason whose failure must never keep an app alive.
PREDESTROY = "pr-predestroy"
#: Bytes of random in a generated secret (hex doubles it): as Heroku's generator.
SECRET_BYTES = 32


class StepFailed(Exception):
    """A step of a plan failed; the rest of that app's plan is skipped."""


@dataclass
class _Progress:
    """What one app's run of a plan learnt so far."""

    idle_after: float | None = None
    build: Build | None = None
    #: What went wrong without stopping the plan (a failed postdeploy).
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one app's plan came to."""

    ok: bool
    reason: str
    code_fault: bool = False
    """The repository's own doing (its build, release or app.json), not the platform's."""

    def __post_init__(self) -> None:
        # The reason goes to the app's log stream, the review record and GitHub's commit
        # status: git's errors in it may carry a clone URL's credentials.
        object.__setattr__(self, "reason", mask_text(self.reason))


def by_app(plan: Plan) -> dict[str, list[Action]]:
    """A plan's actions per app, in plan order."""
    grouped: dict[str, list[Action]] = {}
    for action in plan.actions:
        grouped.setdefault(action.app, []).append(action)
    return grouped


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
        """Run ``plan`` in the background, each app's actions after its earlier plans."""
        for app, actions in by_app(plan).items():
            self.enqueue(app, functools.partial(self.run, app, actions, plan.summary))

    def enqueue(self, app: str, work: Callable[[], Awaitable[object]]) -> None:
        """Run ``work`` once every plan enqueued before for ``app`` is done."""
        previous = self._chains.get(app)
        task = asyncio.create_task(self._after(previous, work), name=f"review-{app}")
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
        self, previous: asyncio.Task[None] | None, work: Callable[[], Awaitable[object]]
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await work()

    async def run(self, app: str, actions: Sequence[Action], summary: str) -> Outcome:
        """Carry out one app's actions now; the first failure stops the rest."""
        log.info("review plan started", extra={"app": app, "plan": summary})
        progress = _Progress()
        for action in actions:
            try:
                await self._step(action, progress)
            except (StepFailed, ControlError) as exc:
                step = type(action).__name__
                log.error(
                    "review plan stopped", extra={"app": app, "step": step, "error": str(exc)}
                )
                reason = str(exc)
                if isinstance(exc, NotFound) and isinstance(action, BuildAction):
                    reason += "; create the app (slipway apps:create), then redeliver"
                return Outcome(False, reason, code_fault=isinstance(exc, StepFailed))
        log.info("review plan done", extra={"app": app, "plan": summary})
        return Outcome(True, "; ".join(progress.notes))

    async def _step(self, action: Action, progress: _Progress) -> None:
        if isinstance(action, EnsureApp):
            await self._ensure(action)
            progress.idle_after = action.idle_after
        elif isinstance(action, BuildAction):
            build = await self.builds.create(
                action.app,
                {"url": action.git_url, "version": action.commit},
                actor=self._actor,
                # The repository's URL came from a signed webhook, not from a tenant.
                tenant=False,
            )
            progress.build = await self.builds.wait(action.app, build.id)
            if progress.build.status is not BuildStatus.SUCCEEDED:
                raise StepFailed(f"build {build.id} failed: {progress.build.output[:500]}")
        elif isinstance(action, Release):
            await self._released(action.app, progress)
        elif isinstance(action, RunOnce):
            try:
                result = await self.control.run_once(
                    action.app, action.command, reason=action.reason, actor=self._actor
                )
            except ControlError as exc:
                if action.reason != PREDESTROY:
                    raise
                # Nothing to run it on (never released, already gone): the app still goes.
                progress.notes.append(f"{PREDESTROY} did not run: {exc}")
                return
            for line in result.output.splitlines():
                self._sink.publish(action.app, "release", action.reason, line, self._clock())
            if not result.ok:
                # pr-predestroy failing must not keep the app alive; postdeploy's is reported.
                log.warning(
                    "one-off command failed", extra={"app": action.app, "reason": action.reason}
                )
                progress.notes.append(f"{action.reason} failed")
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
            host = validate_hostname(action.host)
            await self.control.add_domain(action.app, host, actor=self._actor)

    async def _create(self, action: EnsureApp) -> None:
        # app.json is an edge too: the API's rules, applied as the API applies them.
        await self.control.create_app(validate_app_name(action.app), actor=self._actor)
        env = _values(action.env)
        if env:
            changes = validate_config_changes(dict(env))
            await self.control.update_config(action.app, changes, actor=self._actor)
        for addon in action.addons:
            plan = addon.kind.value if addon.plan is None else f"{addon.kind.value}:{addon.plan}"
            alias = None if addon.alias is None else validate_attachment(addon.alias)
            await self.control.create_addon(
                action.app, plan=plan, attachment=alias, actor=self._actor
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
            FormationChange(type=f.type, idle_after=idle)
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
