"""Every plan's outcome, visible: GitHub's answer, the app's status, its log line, a commit status.

A real control plane (SQLite store, local builder, real git) behind the
webhook on loopback; a local aiohttp server stands in for api.github.com's
statuses endpoint and records each POST. One test per failure class, each
asserting what GitHub's delivery log would show (the HTTP answer), the
app's recorded status, the line in its stream and the commit statuses.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from control.building import Builds
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.settings import BuildSettings
from control.review.apply import ControlReviewApps, Outcome
from control.review.deliveries import REVIEW_CONTEXT, STAGING_CONTEXT, DeliveryRunner
from control.review.github import sign
from control.review.plan import Pipeline
from control.review.records import ReviewRecords, ReviewState
from control.review.source import GitAppJson
from control.review.statuses import GitHubStatuses
from control.review.webhook import WebhookConfig, webhook_app
from control.service import Control
from control.store.db import Store
from tests.builds.apps import RecordingSink, commit, python_app
from tests.control.targets import RecordingTarget
from tests.review.payloads import pull_request, push

SECRET = b"outcomes secret"
TOKEN = "ghp_test-token-for-the-stand-in"
PIPELINE = Pipeline(name="shop", domain="review.test", staging_app="shop-staging")
REPO = "octo-org/hello-world"
#: Bound on one plan with one build of an app that installs nothing.
SETTLE = 30.0


@dataclass
class GitHubStandIn:
    """api.github.com's ``POST /repos/{owner}/{repo}/statuses/{sha}``, recorded."""

    answer: int = 201
    posts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.append((request.path, request.headers.get("Authorization", ""), body))
        return web.json_response({"id": len(self.posts), **body}, status=self.answer)

    def states(self, sha: str) -> list[tuple[str, str]]:
        return [
            (body["state"], body["context"])
            for path, _, body in self.posts
            if path == f"/repos/{REPO}/statuses/{sha}"
        ]


@dataclass
class World:
    url: str
    session: aiohttp.ClientSession
    control: Control
    review: ControlReviewApps
    records: ReviewRecords
    sink: RecordingSink
    github: GitHubStandIn
    repo: Path

    async def deliver(self, event: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        data = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(SECRET, data),
        }
        async with self.session.post(self.url, data=data, headers=headers) as response:
            answer = (response.status, await response.json())
        await asyncio.wait_for(self.review.idle(), SETTLE)
        return answer

    async def status(self, app: str) -> tuple[ReviewState, str]:
        recorded = await self.records.status(app)
        assert recorded is not None
        return recorded.state, recorded.reason

    def stream(self, app: str) -> list[str]:
        return [line[3] for line in self.sink.lines if line[0] == app and line[2] == "review"]


async def _serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    bound: int = runner.addresses[0][1]
    return runner, bound


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    github = GitHubStandIn()
    api = web.Application()
    api.router.add_post("/repos/{owner}/{repo}/statuses/{sha}", github.handle)
    api_runner, api_port = await _serve(api)
    sink = RecordingSink()
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
    control = Control(store=store, target=RecordingTarget())
    await control.start()
    builder = LocalBuilder(
        BuildSettings(root=tmp_path / "builds", pip_args=("--no-index",), timeout=SETTLE),
        sink=sink,
        metrics=BuildMetrics(CollectorRegistry()),
    )
    builds = Builds(control, builder=builder, sink=sink)
    review = ControlReviewApps(control, builds, sink=sink)
    records = ReviewRecords(store)
    statuses = GitHubStatuses(TOKEN, api_url=f"http://127.0.0.1:{api_port}")
    deliveries = DeliveryRunner(
        review, records, pipeline=PIPELINE, app_json=GitAppJson(), sink=sink, statuses=statuses
    )
    await deliveries.start(since=time.time())
    parent = web.Application()
    parent.add_subapp(
        "/github",
        webhook_app(
            WebhookConfig(secret=SECRET), deliveries=deliveries, registry=CollectorRegistry()
        ),
    )
    runner, port = await _serve(parent)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    try:
        yield World(
            f"http://127.0.0.1:{port}/github/webhooks",
            session,
            control,
            review,
            records,
            sink,
            github,
            tmp_path / "repo",
        )
    finally:
        await session.close()
        await runner.cleanup()
        await review.close()
        await deliveries.close()
        await builds.close()
        await store.close()
        await api_runner.cleanup()


class TestSuccess:
    async def test_a_deployed_review_app_is_recorded_logged_and_green_on_github(
        self, world: World
    ) -> None:
        sha = commit(world.repo, python_app(deps=False))

        status, answer = await world.deliver(
            "pull_request", pull_request("opened", 3, head_sha=sha, clone_url=str(world.repo))
        )

        assert (status, answer["status"]) == (202, "accepted")
        assert (await world.status("shop-pr-3"))[0] is ReviewState.DEPLOYED
        assert world.stream("shop-pr-3") == [f"PR #3 opened at {sha[:7]}: create shop-pr-3: done"]
        assert world.github.states(sha) == [
            ("pending", REVIEW_CONTEXT),
            ("success", REVIEW_CONTEXT),
        ]
        _path, authorization, body = world.github.posts[-1]
        assert authorization == f"Bearer {TOKEN}"
        assert body == {
            "state": "success",
            "description": "Deployed shop-pr-3",
            "context": REVIEW_CONTEXT,
        }


class TestFailureClasses:
    async def test_a_repository_that_cannot_be_fetched(self, world: World, tmp_path: Path) -> None:
        """Was: 500 {"id": "internal_error"}, the reason only in the server's traceback."""
        sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
        gone = str(tmp_path / "deleted-repository")

        status, answer = await world.deliver(
            "pull_request", pull_request("opened", 4, head_sha=sha, clone_url=gone)
        )

        assert (status, answer["status"]) == (202, "accepted")
        state, reason = await world.status("shop-pr-4")
        assert state is ReviewState.FAILED
        assert reason.startswith(f"cannot fetch {REPO} at 6dcb09b: git fetch failed")
        assert world.stream("shop-pr-4") == [
            f"PR #4 opened at 6dcb09b: create shop-pr-4: failed: {reason}"
        ]
        assert world.github.states(sha) == [("pending", REVIEW_CONTEXT), ("error", REVIEW_CONTEXT)]
        assert world.github.posts[-1][2]["description"].startswith("cannot fetch")
        assert len(world.github.posts[-1][2]["description"]) <= 140
        assert await world.control.list_apps(after=None, limit=10) == []

    async def test_a_push_when_the_staging_app_does_not_exist(self, world: World) -> None:
        """Was: 202 accepted, then a failure nobody saw."""
        sha = commit(world.repo, python_app(deps=False))

        status, answer = await world.deliver("push", push(after=sha, clone_url=str(world.repo)))

        assert (status, answer["status"]) == (202, "accepted")
        state, reason = await world.status("shop-staging")
        assert state is ReviewState.FAILED
        assert reason == (
            "no app named 'shop-staging'; create the app (slipway apps:create), then redeliver"
        )
        assert world.stream("shop-staging")[-1].endswith(f"failed: {reason}")
        assert world.github.states(sha) == [
            ("pending", STAGING_CONTEXT),
            ("error", STAGING_CONTEXT),
        ]

    async def test_an_invalid_app_json(self, world: World) -> None:
        sha = commit(world.repo, {**python_app(deps=False), "app.json": '{"addons": 3}'})

        status, _ = await world.deliver(
            "pull_request", pull_request("synchronize", 5, head_sha=sha, clone_url=str(world.repo))
        )

        assert status == 202
        state, reason = await world.status("shop-pr-5")
        assert (state, reason) == (
            ReviewState.FAILED,
            f"app.json at {sha[:7]}: addons must be a list",
        )
        # The repository's fault, not the platform's: "failure", not "error".
        assert world.github.states(sha)[-1] == ("failure", REVIEW_CONTEXT)

    async def test_a_build_that_fails(self, world: World) -> None:
        sha = commit(world.repo, {"README": "no Procfile, no app\n"})

        status, _ = await world.deliver(
            "pull_request", pull_request("opened", 6, head_sha=sha, clone_url=str(world.repo))
        )

        assert status == 202
        state, reason = await world.status("shop-pr-6")
        assert state is ReviewState.FAILED
        assert reason.startswith("build ")
        assert " failed: " in reason
        assert world.github.states(sha)[-1] == ("failure", REVIEW_CONTEXT)

    async def test_github_refusing_the_status_changes_nothing_else(self, world: World) -> None:
        world.github.answer = 422
        sha = commit(world.repo, python_app(deps=False))

        status, _ = await world.deliver(
            "pull_request", pull_request("opened", 7, head_sha=sha, clone_url=str(world.repo))
        )

        assert status == 202
        assert (await world.status("shop-pr-7"))[0] is ReviewState.DEPLOYED
        assert len(world.github.posts) == 2


def test_an_outcome_s_reason_never_carries_a_clone_url_s_credentials() -> None:
    """The reason reaches the app's log stream, the review record and GitHub's commit status."""
    failed = Outcome(
        False,
        "cannot fetch: fatal: unable to access 'https://bot:ghp_s3cr3t@git.example.com/o/r.git/'"
        " (https://git.example.com/o/r.git?access_token=tok123)",
    )
    assert "ghp_s3cr3t" not in failed.reason
    assert "tok123" not in failed.reason
    assert "git.example.com/o/r.git" in failed.reason
