"""From an accepted GitHub delivery to an outcome people can see.

The webhook only checks, claims and hands over: ``accept`` records the
delivery and the app's status as pending and queues the work on the app's
chain (``ControlReviewApps.enqueue``), so GitHub gets its answer at once.
The work reads app.json at the commit, plans, runs the plan, and reports
every outcome, failures included, in three places: the app's recorded status
with the reason (``ReviewRecords``), a line in the app's log stream (source
``release``, process ``review``), and a commit status on GitHub when a token
is configured. Plans that no delivery asked for (stale apps) are reported
the same way, without a commit status.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from control.builds.model import LogSink
from control.errors import ControlError
from control.review.appjson import EMPTY, ReviewConfig, parse_app_json
from control.review.apply import Outcome, by_app
from control.review.errors import AppJsonError, ReviewError
from control.review.github import Event, PullRequestAction, PullRequestEvent, PushEvent
from control.review.plan import Action, DestroyApp, Pipeline, Plan, plan_event
from control.review.records import KEEP, ReviewRecords, ReviewState, _Keep
from control.review.source import AppJsonReader
from control.review.statuses import CommitState, CommitStatuses, NoStatuses

log = logging.getLogger(__name__)

#: The commit status contexts, one per kind of deploy, as GitHub groups checks by context.
REVIEW_CONTEXT = "slipway/review-app"
STAGING_CONTEXT = "slipway/staging"


class PlanRunner(Protocol):
    """What runs plans, per app in order (``ControlReviewApps``)."""

    def enqueue(self, app: str, work: Callable[[], Awaitable[object]]) -> None: ...

    async def run(self, app: str, actions: Sequence[Action], summary: str) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class _Ran:
    outcome: Outcome
    summary: str
    predestroy: str | _Keep | None = KEEP


class DeliveryRunner:
    def __init__(
        self,
        review: PlanRunner,
        records: ReviewRecords,
        *,
        pipeline: Pipeline,
        app_json: AppJsonReader,
        sink: LogSink,
        statuses: CommitStatuses | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._review = review
        self._records = records
        self._pipeline = pipeline
        self._app_json = app_json
        self._sink = sink
        self._statuses = statuses or NoStatuses()
        self._clock = clock
        self._planned_apps: set[str] = set()

    async def start(self, *, since: float) -> None:
        """Fail what a stopped control plane left running, so a redelivery runs it again."""
        count = await self._records.interrupted(before=since, now=self._clock())
        if count:
            log.warning("deliveries interrupted by a restart marked failed", extra={"count": count})

    async def close(self) -> None:
        await self._statuses.close()

    async def accept(self, delivery: str, event_name: str, event: Event) -> Plan | None:
        """Claim ``delivery`` and queue its plan; None when it was handled before.

        Returns the plan as the event alone decides it (app.json is read later).
        """
        preview = plan_event(event, self._pipeline)
        app = _target(event, self._pipeline)
        now = self._clock()
        claimed = await self._records.claim(
            delivery, event=event_name, app=app, summary=preview.summary, now=now
        )
        if not claimed:
            return None
        try:
            await self._records.set_status(
                app,
                ReviewState.PENDING,
                preview.summary,
                commit=_sha(event),
                delivery=delivery,
                now=now,
            )
            self._review.enqueue(app, functools.partial(self._delivered, delivery, event, app))
        except BaseException:
            await self._records.release(delivery)
            raise
        return preview

    async def apply(self, plan: Plan) -> None:
        """A plan no delivery asked for (stale apps): run and reported like the others.

        An app whose previous such plan is still queued or running is skipped: the
        scheduler's next look must not queue a second destroy behind the first.
        """
        for app, actions in by_app(plan).items():
            if app in self._planned_apps:
                continue
            self._planned_apps.add(app)
            self._review.enqueue(app, functools.partial(self._planned, app, actions, plan.summary))

    async def _planned(self, app: str, actions: Sequence[Action], summary: str) -> None:
        if _destroys(actions):
            recorded = await self._records.status(app)
            if recorded is not None and recorded.state is ReviewState.DESTROYED:
                # A look that raced the destroy before it: nothing left to do or to report.
                self._planned_apps.discard(app)
                return
        try:
            outcome = await self._guarded(app, self._review.run(app, actions, summary))
        finally:
            self._planned_apps.discard(app)
        try:
            await self._report(app, _Ran(outcome, summary), destroy=_destroys(actions))
        except ControlError as exc:
            log.error("recording a review outcome failed", extra={"app": app, "error": str(exc)})

    async def _delivered(self, delivery: str, event: Event, app: str) -> None:
        closing = isinstance(event, PullRequestEvent) and event.action is PullRequestAction.CLOSED
        if not closing:
            await self._commit_status(event, CommitState.PENDING, f"Deploying {app}")
        ran = await self._guarded_run(event, app)
        try:
            await self._report(app, ran, destroy=closing, delivery=delivery)
            await self._records.finish(
                delivery, ok=ran.outcome.ok, reason=ran.outcome.reason, now=self._clock()
            )
        except ControlError as exc:
            # The store is down: the next start marks this delivery interrupted.
            log.error(
                "recording a delivery's outcome failed", extra={"app": app, "error": str(exc)}
            )
        if not closing:
            state = (
                CommitState.SUCCESS
                if ran.outcome.ok
                else CommitState.FAILURE
                if ran.outcome.code_fault
                else CommitState.ERROR
            )
            what = f"Deployed {app}" if ran.outcome.ok else ran.outcome.reason
            await self._commit_status(event, state, what)

    async def _guarded_run(self, event: Event, app: str) -> _Ran:
        try:
            return await self._run(event, app)
        except Exception as exc:
            return _Ran(_internal(app, exc), plan_event(event, self._pipeline).summary)

    async def _guarded(self, app: str, running: Awaitable[Outcome]) -> Outcome:
        try:
            return await running
        except Exception as exc:
            return _internal(app, exc)

    async def _run(self, event: Event, app: str) -> _Ran:
        if isinstance(event, PushEvent):
            plan = plan_event(event, self._pipeline)
            actions = by_app(plan).get(app, [])
            return _Ran(await self._review.run(app, actions, plan.summary), plan.summary)
        summary = plan_event(event, self._pipeline).summary
        closing = event.action is PullRequestAction.CLOSED
        repo = event.repository.full_name
        try:
            text = await self._app_json.read(event.repository.clone_url, event.head_sha)
        except ReviewError as exc:
            if not closing:
                why = f"cannot fetch {repo} at {event.head_sha[:7]}: {exc}"
                return _Ran(Outcome(False, why), summary)
            text = None  # a deleted branch must not keep its review app alive
        config: ReviewConfig | None = None
        if text is not None:
            try:
                config = parse_app_json(text)
            except AppJsonError as exc:
                why = f"app.json at {event.head_sha[:7]}: {exc}"
                return _Ran(Outcome(False, why, code_fault=True), summary)
        predestroy: str | _Keep | None = KEEP if config is None else config.predestroy
        if closing and (config is None or config.predestroy is None):
            # The branch (or its app.json) is gone: the command recorded at the last deploy.
            recorded = (await self._records.predestroys()).get(app)
            if recorded is not None:
                config = replace(config or EMPTY, predestroy=recorded)
        plan = plan_event(event, self._pipeline, config or EMPTY)
        actions = by_app(plan).get(app, [])
        outcome = await self._review.run(app, actions, plan.summary)
        return _Ran(outcome, plan.summary, KEEP if closing else predestroy)

    async def _report(
        self, app: str, ran: _Ran, *, destroy: bool, delivery: str | None = None
    ) -> None:
        outcome = ran.outcome
        if not outcome.ok:
            state, line = ReviewState.FAILED, f"{ran.summary}: failed: {outcome.reason}"
        else:
            state = ReviewState.DESTROYED if destroy else ReviewState.DEPLOYED
            line = f"{ran.summary}: done"
            if outcome.reason:  # what went wrong without stopping it (a failed postdeploy)
                line += f" ({outcome.reason})"
        now = self._clock()
        self._sink.publish(app, "release", "review", line, now)
        log.info(
            "review outcome", extra={"app": app, "state": state.value, "reason": outcome.reason}
        )
        await self._records.set_status(
            app,
            state,
            outcome.reason if not outcome.ok else line,
            delivery=delivery,
            predestroy=ran.predestroy,
            now=now,
        )

    async def _commit_status(self, event: Event, state: CommitState, description: str) -> None:
        context = STAGING_CONTEXT if isinstance(event, PushEvent) else REVIEW_CONTEXT
        await self._statuses.post(
            event.repository.full_name, _sha(event), state, description, context=context
        )


def _target(event: Event, pipeline: Pipeline) -> str:
    if isinstance(event, PushEvent):
        return pipeline.staging_app
    return pipeline.review_app(event.number)


def _sha(event: Event) -> str:
    return event.after if isinstance(event, PushEvent) else event.head_sha


def _destroys(actions: Sequence[Action]) -> bool:
    return any(isinstance(action, DestroyApp) for action in actions)


def _internal(app: str, exc: Exception) -> Outcome:
    # A bug, not a failure anyone planned for: still recorded, with the traceback in our log.
    log.error("review plan crashed", extra={"app": app}, exc_info=exc)
    return Outcome(False, f"internal error ({type(exc).__name__}); the control plane's log has it")
