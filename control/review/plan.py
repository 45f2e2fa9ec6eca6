"""From a GitHub event to the actions that bring review apps (and staging) in line.

Pure functions: no I/O, no clock (``now`` is passed). Whatever applies the
plan (the control plane's API) owns ordering and retries; the plan says what
and in which order within one event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from control.review.appjson import EMPTY, Addon, Generated, ReviewConfig
from control.review.errors import ReviewError
from control.review.github import Event, PullRequestAction, PullRequestEvent, PushEvent

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
#: Seconds without traffic before a review app sleeps: neetoDeploy's 5 minutes.
REVIEW_IDLE_AFTER = 300.0
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    """Review apps are named ``{name}-pr-{N}``."""
    domain: str
    """Review apps answer at ``pr-{N}.{domain}``."""
    staging_app: str
    """The app a push to the default branch deploys."""
    stale_after_days: float = 5.0
    """A review app with no push for this long is destroyed."""
    branch: str | None = None
    """The branch whose pushes deploy staging; None: the repository's default branch."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ReviewError(f"pipeline name {self.name!r} must be lowercase letters, digits, '-'")
        if not _DOMAIN.match(self.domain):
            raise ReviewError(f"pipeline domain {self.domain!r} is not a DNS name")
        if not _NAME.match(self.staging_app):
            raise ReviewError(f"staging app {self.staging_app!r} is not an app name")
        if self.stale_after_days <= 0:
            raise ReviewError("stale_after_days must be positive")

    def review_app(self, number: int) -> str:
        return f"{self.name}-pr-{number}"

    def review_host(self, number: int) -> str:
        return f"pr-{number}.{self.domain}"


@dataclass(frozen=True, slots=True)
class EnsureApp:
    """Create the app if missing (with its add-ons and env), else leave config as it is."""

    app: str
    host: str
    env: Mapping[str, str | Generated]
    addons: tuple[Addon, ...]
    idle_after: float = REVIEW_IDLE_AFTER
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Build:
    app: str
    git_url: str
    commit: str


@dataclass(frozen=True, slots=True)
class Release:
    """Release the build made by the Build before it in the plan."""

    app: str


@dataclass(frozen=True, slots=True)
class RunOnce:
    """A one-off process on the app's latest release (postdeploy, pr-predestroy)."""

    app: str
    command: str
    reason: str


@dataclass(frozen=True, slots=True)
class DestroyApp:
    """Delete the app, its releases and its add-ons (databases dropped)."""

    app: str


Action = EnsureApp | Build | Release | RunOnce | DestroyApp


@dataclass(frozen=True, slots=True)
class Plan:
    summary: str
    actions: tuple[Action, ...]


def plan_event(event: Event, pipeline: Pipeline, config: ReviewConfig | None = None) -> Plan:
    """What to do about one event; ``config`` is the app.json at the event's commit."""
    config = config or EMPTY
    if isinstance(event, PushEvent):
        return _push(event, pipeline)
    return _pull_request(event, pipeline, config)


def _push(event: PushEvent, pipeline: Pipeline) -> Plan:
    if pipeline.branch is not None and event.branch != pipeline.branch:
        return Plan(f"push to {event.branch}: not the pipeline's branch {pipeline.branch}", ())
    if pipeline.branch is None and not event.to_default_branch:
        return Plan(f"push to {event.branch}: not the default branch", ())
    app = pipeline.staging_app
    return Plan(
        f"push to {event.branch} at {event.after[:7]}: deploy {app}",
        (Build(app, event.repository.clone_url, event.after), Release(app)),
    )


def _pull_request(event: PullRequestEvent, pipeline: Pipeline, config: ReviewConfig) -> Plan:
    app = pipeline.review_app(event.number)
    if event.action is PullRequestAction.CLOSED:
        return destroy_plan(app, config, why=f"PR #{event.number} {_closed(event)}")
    ensure = EnsureApp(
        app=app,
        host=pipeline.review_host(event.number),
        env=config.env,
        addons=config.addons,
        labels={"pipeline": pipeline.name, "pull-request": str(event.number)},
    )
    # A fork's head commit is reachable from the base repository (refs/pull/N/head),
    # so the base repository's URL serves both kinds of pull request.
    build = Build(app, event.repository.clone_url, event.head_sha)
    actions: list[Action] = [ensure, build, Release(app)]
    created = event.action in (PullRequestAction.OPENED, PullRequestAction.REOPENED)
    if created and config.postdeploy:
        # Once, when the app is made: it seeds the fresh database.
        actions.append(RunOnce(app, config.postdeploy, "postdeploy"))
    verb = "create" if created else "update"
    return Plan(
        f"PR #{event.number} {event.action.value} at {event.head_sha[:7]}: {verb} {app}",
        tuple(actions),
    )


def _closed(event: PullRequestEvent) -> str:
    return "merged" if event.merged else "closed"


def destroy_plan(app: str, config: ReviewConfig, *, why: str) -> Plan:
    actions: list[Action] = []
    if config.predestroy:
        actions.append(RunOnce(app, config.predestroy, "pr-predestroy"))
    actions.append(DestroyApp(app))
    return Plan(f"{why}: destroy {app}", tuple(actions))


def plan_stale(
    last_push: Mapping[int, float],
    *,
    pipeline: Pipeline,
    now: float,
    configs: Mapping[int, ReviewConfig] | None = None,
) -> Plan:
    """Destroy review apps (PR number -> time of last push) quiet for ``stale_after_days``."""
    limit = pipeline.stale_after_days * _DAY
    actions: list[Action] = []
    stale = sorted(number for number, at in last_push.items() if now - at >= limit)
    for number in stale:
        config = (configs or {}).get(number, EMPTY)
        plan = destroy_plan(pipeline.review_app(number), config, why="stale")
        actions.extend(plan.actions)
    names = ", ".join(pipeline.review_app(n) for n in stale) or "none"
    return Plan(f"stale after {pipeline.stale_after_days:g} days: {names}", tuple(actions))
