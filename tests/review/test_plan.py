"""Review-app plans: what each event does to which app, decided without I/O."""

from __future__ import annotations

import json

import pytest

from control.review.appjson import Addon, AddonKind, Generated, parse_app_json
from control.review.errors import ReviewError
from control.review.github import Ignored, PullRequestEvent, PushEvent, parse_event
from control.review.plan import (
    Build,
    DestroyApp,
    EnsureApp,
    Pipeline,
    Release,
    RunOnce,
    plan_event,
    plan_stale,
)
from tests.review import payloads

PIPELINE = Pipeline(name="hello", domain="review.example.test", staging_app="hello-staging")
CONFIG = parse_app_json(
    json.dumps(
        {
            "env": {"SECRET_KEY": {"generator": "secret"}},
            "addons": ["heroku-postgresql"],
            "scripts": {"postdeploy": "python seed.py", "pr-predestroy": "python dump.py"},
        }
    )
)
CLONE = "https://github.com/octo-org/hello-world.git"
DAY = 86400.0


def _pr(action: str, number: int = 42, merged: bool = False) -> PullRequestEvent:
    event = parse_event("pull_request", payloads.pull_request(action, number, merged=merged))
    assert isinstance(event, PullRequestEvent)
    return event


def test_an_opened_pull_request_creates_builds_releases_and_seeds_its_review_app() -> None:
    plan = plan_event(_pr("opened"), PIPELINE, CONFIG)

    assert plan.actions == (
        EnsureApp(
            app="hello-pr-42",
            host="pr-42.review.example.test",
            env={"SECRET_KEY": Generated("secret")},
            addons=(Addon(AddonKind.POSTGRES, None, None),),
            idle_after=300.0,
            labels={"pipeline": "hello", "pull-request": "42"},
        ),
        Build("hello-pr-42", CLONE, payloads.HEAD_SHA),
        Release("hello-pr-42"),
        RunOnce("hello-pr-42", "python seed.py", "postdeploy"),
    )
    assert plan.summary == "PR #42 opened at 6dcb09b: create hello-pr-42"


def test_a_reopened_pull_request_is_created_again_with_its_postdeploy() -> None:
    plan = plan_event(_pr("reopened"), PIPELINE, CONFIG)
    assert RunOnce("hello-pr-42", "python seed.py", "postdeploy") in plan.actions


def test_a_push_to_the_pull_request_rebuilds_without_running_postdeploy_again() -> None:
    plan = plan_event(_pr("synchronize"), PIPELINE, CONFIG)

    assert [type(a) for a in plan.actions] == [EnsureApp, Build, Release]
    assert plan.summary == "PR #42 synchronize at 6dcb09b: update hello-pr-42"


def test_a_closed_pull_request_runs_pr_predestroy_then_destroys_the_app() -> None:
    for merged in (True, False):
        plan = plan_event(_pr("closed", merged=merged), PIPELINE, CONFIG)
        assert plan.actions == (
            RunOnce("hello-pr-42", "python dump.py", "pr-predestroy"),
            DestroyApp("hello-pr-42"),
        )
    assert plan.summary == "PR #42 closed: destroy hello-pr-42"


def test_a_repository_without_app_json_gets_a_plain_review_app() -> None:
    opened = plan_event(_pr("opened", 3), PIPELINE)
    closed = plan_event(_pr("closed", 3), PIPELINE)

    assert opened.actions[0] == EnsureApp(
        app="hello-pr-3",
        host="pr-3.review.example.test",
        env={},
        addons=(),
        labels={"pipeline": "hello", "pull-request": "3"},
    )
    assert [type(a) for a in opened.actions] == [EnsureApp, Build, Release]
    assert closed.actions == (DestroyApp("hello-pr-3"),)


def test_a_push_to_the_default_branch_deploys_the_staging_app() -> None:
    event = parse_event("push", payloads.push())
    assert isinstance(event, PushEvent)

    plan = plan_event(event, PIPELINE, CONFIG)

    assert plan.actions == (
        Build("hello-staging", CLONE, payloads.HEAD_SHA),
        Release("hello-staging"),
    )


def test_review_apps_with_no_push_for_the_stale_period_are_destroyed() -> None:
    now = 1_800_000_000.0
    pipeline = Pipeline("hello", "review.example.test", "hello-staging", stale_after_days=5)
    last_push = {
        1: now - 5 * DAY,  # exactly stale
        2: now - 5 * DAY + 1,  # a second short
        3: now - 30 * DAY,
    }

    plan = plan_stale(last_push, pipeline=pipeline, now=now, configs={3: CONFIG})

    assert plan.actions == (
        DestroyApp("hello-pr-1"),
        RunOnce("hello-pr-3", "python dump.py", "pr-predestroy"),
        DestroyApp("hello-pr-3"),
    )
    assert plan.summary == "stale after 5 days: hello-pr-1, hello-pr-3"


def test_nothing_is_stale_while_every_review_app_saw_a_recent_push() -> None:
    plan = plan_stale({1: 100.0}, pipeline=PIPELINE, now=100.0 + DAY)
    assert plan.actions == ()
    assert plan.summary == "stale after 5 days: none"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Hello"}, "pipeline name 'Hello'"),
        ({"domain": "not a domain"}, "is not a DNS name"),
        ({"domain": "localhost"}, "is not a DNS name"),
        ({"staging_app": "Staging!"}, "is not an app name"),
        ({"stale_after_days": 0}, "must be positive"),
    ],
)
def test_a_pipeline_with_bad_names_is_refused(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "name": "hello",
        "domain": "review.example.test",
        "staging_app": "hello-staging",
    }
    with pytest.raises(ReviewError, match=message):
        Pipeline(**{**base, **kwargs})  # type: ignore[arg-type]


def test_a_pipeline_with_a_branch_deploys_staging_from_that_branch_only() -> None:
    pipeline = Pipeline(
        name="hello", domain="review.example.test", staging_app="hello-staging", branch="release"
    )
    to_release = parse_event("push", payloads.push("refs/heads/release"), branch="release")
    to_main = parse_event("push", payloads.push("refs/heads/main"))
    assert isinstance(to_release, PushEvent)
    assert isinstance(to_main, PushEvent)
    skipped = parse_event("push", payloads.push("refs/heads/main"), branch="release")
    assert skipped == Ignored("push to 'main', not the pipeline's branch 'release'")

    assert plan_event(to_release, pipeline, CONFIG).actions == (
        Build("hello-staging", CLONE, payloads.HEAD_SHA),
        Release("hello-staging"),
    )
    ignored = plan_event(to_main, pipeline, CONFIG)
    assert ignored.actions == ()
    assert "not the pipeline's branch release" in ignored.summary
