"""The webhook endpoint on a real aiohttp server on loopback, with GitHub-shaped deliveries.

Behind it, the real ``DeliveryRunner`` over a real state store (SQLite) and
real git: only the plan runner records instead of building. Each failure
class is shown twice: the answer GitHub's delivery log would show, and the
app's recorded status.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from control.review.apply import Outcome
from control.review.deliveries import DeliveryRunner
from control.review.github import sign
from control.review.plan import Action, Build, DestroyApp, EnsureApp, Pipeline, Release, RunOnce
from control.review.records import INTERRUPTED, DeliveryState, ReviewRecords, ReviewState
from control.review.source import GitAppJson
from control.review.webhook import WebhookConfig, webhook_app
from control.store.db import Store
from tests.builds.apps import RecordingSink, commit
from tests.review import payloads

SECRET = b"webhook secret for tests"
PIPELINE = Pipeline(name="hello", domain="review.example.test", staging_app="hello-staging")
APP_JSON = {
    "env": {"SECRET_KEY": {"generator": "secret"}},
    "environments": {"review": {"addons": ["heroku-postgresql"]}},
    "scripts": {"postdeploy": "python seed.py", "pr-predestroy": "python dump.py"},
}
#: Bound on the background work of one delivery here (a git fetch of a local repository).
SETTLE = 20.0


@dataclass
class RecordingRunner:
    """The PlanRunner seam: each app's work chained as in ControlReviewApps, plans recorded."""

    plans: list[tuple[str, tuple[Action, ...]]] = field(default_factory=list)
    outcome: Outcome = field(default_factory=lambda: Outcome(True, ""))
    hold: bool = False
    chains: dict[str, asyncio.Task[object]] = field(default_factory=dict)

    def enqueue(self, app: str, work: Callable[[], Awaitable[object]]) -> None:
        previous = self.chains.get(app)

        async def after() -> object:
            if previous is not None:
                await asyncio.wait([previous])
            if self.hold:
                await asyncio.Event().wait()  # a plan that outlives the control plane
            return await work()

        self.chains[app] = asyncio.create_task(after())

    async def run(self, app: str, actions: Sequence[Action], summary: str) -> Outcome:
        self.plans.append((app, tuple(actions)))
        return self.outcome

    async def idle(self) -> None:
        async with asyncio.timeout(SETTLE):
            await asyncio.gather(*self.chains.values())

    async def close(self) -> None:
        for task in self.chains.values():
            task.cancel()
        await asyncio.gather(*self.chains.values(), return_exceptions=True)


@dataclass
class Endpoint:
    url: str
    session: aiohttp.ClientSession
    review_apps: RecordingRunner
    records: ReviewRecords
    sink: RecordingSink
    registry: CollectorRegistry
    repo: Path
    head: str

    async def deliver(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        delivery: str | None = None,
        signature: str | None = "sign",
    ) -> tuple[int, dict[str, Any]]:
        data = payloads.body(payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "292430182",
        }
        if signature == "sign":
            headers["X-Hub-Signature-256"] = sign(SECRET, data)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        async with self.session.post(self.url, data=data, headers=headers) as response:
            return response.status, await response.json()

    def count(self, event: str, outcome: str) -> float | None:
        return self.registry.get_sample_value(
            "slipway_github_deliveries_total", {"event": event, "outcome": outcome}
        )


@dataclass
class Served:
    """A webhook endpoint over a store; ``restart`` gives a fresh one over the same store."""

    tmp_path: Path
    port: int
    db_url: str
    runners: list[web.AppRunner] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    runners_of_plans: list[RecordingRunner] = field(default_factory=list)

    async def start(self, session: aiohttp.ClientSession, repo: Path, head: str) -> Endpoint:
        store = Store.open(self.db_url)
        await store.migrate()
        self.stores.append(store)
        records = ReviewRecords(store)
        review_apps = RecordingRunner()
        self.runners_of_plans.append(review_apps)
        sink = RecordingSink()
        deliveries = DeliveryRunner(
            review_apps, records, pipeline=PIPELINE, app_json=GitAppJson(), sink=sink
        )
        await deliveries.start(since=time.time())
        registry = CollectorRegistry()
        parent = web.Application()
        parent.add_subapp(
            "/github",
            webhook_app(WebhookConfig(secret=SECRET), deliveries=deliveries, registry=registry),
        )
        runner = web.AppRunner(parent)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self.runners.append(runner)
        url = f"http://127.0.0.1:{self.port}/github/webhooks"
        return Endpoint(url, session, review_apps, records, sink, registry, repo, head)

    async def stop(self) -> None:
        """The control plane stops: plans in flight are cut, the listener and store closed."""
        for plans in self.runners_of_plans:
            await plans.close()
        for runner in self.runners:
            await runner.cleanup()
        for store in self.stores:
            await store.close()
        self.runners.clear()
        self.stores.clear()
        self.runners_of_plans.clear()


@pytest.fixture
async def served(tmp_path: Path, unused_port: int) -> AsyncIterator[Served]:
    served = Served(tmp_path, unused_port, f"sqlite+aiosqlite:///{tmp_path}/state.db")
    try:
        yield served
    finally:
        await served.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


@pytest.fixture
async def endpoint(served: Served, session: aiohttp.ClientSession, tmp_path: Path) -> Endpoint:
    repo = tmp_path / "hello-world"
    head = commit(repo, {"app.json": json.dumps(APP_JSON), "Procfile": "web: python app.py\n"})
    return await served.start(session, repo, head)


class TestAccepted:
    async def test_an_opened_pull_request_is_accepted_then_planned_from_app_json(
        self, endpoint: Endpoint
    ) -> None:
        payload = payloads.pull_request(
            "opened", 42, head_sha=endpoint.head, clone_url=str(endpoint.repo)
        )

        status, answer = await endpoint.deliver("pull_request", payload, delivery="d-42")

        assert status == 202
        assert answer == {
            "status": "accepted",
            "delivery": "d-42",
            "summary": f"PR #42 opened at {endpoint.head[:7]}: create hello-pr-42",
        }
        await endpoint.review_apps.idle()
        ((app, actions),) = endpoint.review_apps.plans
        ensure = actions[0]
        assert isinstance(ensure, EnsureApp)
        assert (app, ensure.host) == ("hello-pr-42", "pr-42.review.example.test")
        assert [a.kind.value for a in ensure.addons] == ["postgres"]
        assert actions[1:] == (
            Build("hello-pr-42", str(endpoint.repo), endpoint.head),
            Release("hello-pr-42"),
            RunOnce("hello-pr-42", "python seed.py", "postdeploy"),
        )
        assert endpoint.count("pull_request", "accepted") == 1.0
        recorded = await endpoint.records.status("hello-pr-42")
        assert recorded is not None
        assert (recorded.state, recorded.commit, recorded.delivery) == (
            ReviewState.DEPLOYED, endpoint.head, "d-42",
        )  # fmt: skip
        assert recorded.predestroy == "python dump.py"
        delivery = await endpoint.records.delivery("d-42")
        assert delivery is not None
        assert delivery.state is DeliveryState.SUCCEEDED
        assert [line[:3] for line in endpoint.sink.lines] == [("hello-pr-42", "release", "review")]

    async def test_a_closed_pull_request_runs_predestroy_first(self, endpoint: Endpoint) -> None:
        payload = payloads.pull_request(
            "closed", 42, head_sha=endpoint.head, merged=True, clone_url=str(endpoint.repo)
        )

        status, _ = await endpoint.deliver("pull_request", payload)

        assert status == 202
        await endpoint.review_apps.idle()
        assert endpoint.review_apps.plans == [
            ("hello-pr-42", (RunOnce("hello-pr-42", "python dump.py", "pr-predestroy"),
                             DestroyApp("hello-pr-42"))),
        ]  # fmt: skip
        recorded = await endpoint.records.status("hello-pr-42")
        assert recorded is not None
        assert recorded.state is ReviewState.DESTROYED

    async def test_a_closed_pull_request_whose_branch_is_gone_is_still_destroyed(
        self, endpoint: Endpoint
    ) -> None:
        payload = payloads.pull_request(
            "closed", 9, head_sha="f" * 40, clone_url=str(endpoint.repo)
        )

        status, _ = await endpoint.deliver("pull_request", payload)

        assert status == 202
        await endpoint.review_apps.idle()
        assert endpoint.review_apps.plans == [("hello-pr-9", (DestroyApp("hello-pr-9"),))]

    async def test_a_push_to_main_deploys_staging(self, endpoint: Endpoint) -> None:
        status, answer = await endpoint.deliver("push", payloads.push(after=endpoint.head))

        assert status == 202
        assert answer["summary"].endswith("deploy hello-staging")
        await endpoint.review_apps.idle()
        assert endpoint.review_apps.plans[0][1][0] == Build(
            "hello-staging", "https://github.com/octo-org/hello-world.git", endpoint.head
        )


class TestFailuresAreAcceptedAndRecorded:
    async def test_an_unfetchable_repository_is_202_and_the_app_says_why(
        self, endpoint: Endpoint, tmp_path: Path
    ) -> None:
        """Was: 500 internal_error, the reason only in a traceback in the server log."""
        gone = str(tmp_path / "no-such-repository")
        payload = payloads.pull_request("opened", 5, head_sha=endpoint.head, clone_url=gone)

        status, answer = await endpoint.deliver("pull_request", payload, delivery="d-5")

        assert (status, answer["status"]) == (202, "accepted")
        await endpoint.review_apps.idle()
        assert endpoint.review_apps.plans == []
        recorded = await endpoint.records.status("hello-pr-5")
        assert recorded is not None
        assert recorded.state is ReviewState.FAILED
        assert recorded.reason.startswith(
            f"cannot fetch octo-org/hello-world at {endpoint.head[:7]}: git fetch failed"
        )
        delivery = await endpoint.records.delivery("d-5")
        assert delivery is not None
        assert (delivery.state, delivery.reason) == (DeliveryState.FAILED, recorded.reason)
        ((app, source, process, text, _),) = endpoint.sink.lines
        assert (app, source, process) == ("hello-pr-5", "release", "review")
        assert "failed: cannot fetch octo-org/hello-world" in text

    async def test_an_invalid_app_json_is_202_and_the_app_says_where(
        self, endpoint: Endpoint
    ) -> None:
        bad = commit(endpoint.repo, {"app.json": '{"addons": ["mongolab"]}'})
        payload = payloads.pull_request(
            "synchronize", 42, head_sha=bad, clone_url=str(endpoint.repo)
        )

        status, answer = await endpoint.deliver("pull_request", payload)

        assert (status, answer["status"]) == (202, "accepted")
        await endpoint.review_apps.idle()
        assert endpoint.review_apps.plans == []
        recorded = await endpoint.records.status("hello-pr-42")
        assert recorded is not None
        assert recorded.state is ReviewState.FAILED
        assert recorded.reason == (
            f"app.json at {bad[:7]}: addons[0]: add-on 'mongolab' is not provided here "
            "(use postgres, redis or search)"
        )

    async def test_a_failed_plan_is_recorded_with_its_reason(self, endpoint: Endpoint) -> None:
        endpoint.review_apps.outcome = Outcome(False, "no app named 'hello-staging'")

        status, answer = await endpoint.deliver("push", payloads.push(after=endpoint.head))

        assert (status, answer["status"]) == (202, "accepted")
        await endpoint.review_apps.idle()
        recorded = await endpoint.records.status("hello-staging")
        assert recorded is not None
        assert (recorded.state, recorded.reason) == (
            ReviewState.FAILED, "no app named 'hello-staging'",
        )  # fmt: skip

    async def test_a_state_store_that_cannot_record_is_503_saying_to_redeliver(
        self, session: aiohttp.ClientSession, tmp_path: Path, unused_port: int
    ) -> None:
        served = Served(tmp_path, unused_port, "postgresql+psycopg://postgres@127.0.0.1:1/none")
        store = Store.open(served.db_url)
        records = ReviewRecords(store)
        plans = RecordingRunner()
        deliveries = DeliveryRunner(
            plans, records, pipeline=PIPELINE, app_json=GitAppJson(), sink=RecordingSink()
        )
        parent = web.Application()
        parent.add_subapp(
            "/github",
            webhook_app(
                WebhookConfig(secret=SECRET), deliveries=deliveries, registry=CollectorRegistry()
            ),
        )
        runner = web.AppRunner(parent)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", unused_port).start()
        try:
            endpoint = Endpoint(
                f"http://127.0.0.1:{unused_port}/github/webhooks", session, plans, records,
                RecordingSink(), CollectorRegistry(), tmp_path, "",
            )  # fmt: skip
            status, answer = await endpoint.deliver("push", payloads.push())
        finally:
            await runner.cleanup()
            await store.close()
        assert status == 503
        assert answer["status"] == "unavailable"
        assert "redeliver it from the webhook's Recent Deliveries" in answer["reason"]
        assert plans.plans == []


class TestRedeliveries:
    async def test_a_redelivered_webhook_is_acknowledged_and_applied_once(
        self, endpoint: Endpoint
    ) -> None:
        payload = payloads.pull_request(
            "synchronize", 42, head_sha=endpoint.head, clone_url=str(endpoint.repo)
        )
        delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"

        first = await endpoint.deliver("pull_request", payload, delivery=delivery)
        second = await endpoint.deliver("pull_request", payload, delivery=delivery)

        assert first[0] == second[0] == 202
        assert second[1] == {
            "status": "duplicate",
            "reason": f"delivery {delivery} was already handled",
        }
        await endpoint.review_apps.idle()
        assert len(endpoint.review_apps.plans) == 1
        assert endpoint.count("pull_request", "duplicate") == 1.0

    async def test_a_redelivery_after_a_restart_is_still_a_duplicate(
        self, served: Served, endpoint: Endpoint
    ) -> None:
        payload = payloads.push(after=endpoint.head)
        assert (await endpoint.deliver("push", payload, delivery="d-r"))[0] == 202
        await endpoint.review_apps.idle()
        await served.stop()

        again = await served.start(endpoint.session, endpoint.repo, endpoint.head)
        status, answer = await again.deliver("push", payload, delivery="d-r")

        assert (status, answer["status"]) == (202, "duplicate")
        await again.review_apps.idle()
        assert again.review_apps.plans == []

    async def test_a_failed_delivery_runs_again_when_redelivered(self, endpoint: Endpoint) -> None:
        """Redelivering from GitHub is how someone retries once the cause is fixed."""
        payload = payloads.push(after=endpoint.head)
        endpoint.review_apps.outcome = Outcome(False, "no app named 'hello-staging'")
        await endpoint.deliver("push", payload, delivery="d-f")
        await endpoint.review_apps.idle()
        endpoint.review_apps.outcome = Outcome(True, "")

        status, answer = await endpoint.deliver("push", payload, delivery="d-f")

        assert (status, answer["status"]) == (202, "accepted")
        await endpoint.review_apps.idle()
        assert len(endpoint.review_apps.plans) == 2
        recorded = await endpoint.records.status("hello-staging")
        assert recorded is not None
        assert recorded.state is ReviewState.DEPLOYED

    async def test_a_plan_cut_by_a_restart_is_failed_and_runs_when_redelivered(
        self, served: Served, endpoint: Endpoint
    ) -> None:
        payload = payloads.push(after=endpoint.head)
        endpoint.review_apps.hold = True
        assert (await endpoint.deliver("push", payload, delivery="d-cut"))[0] == 202
        await served.stop()  # mid-plan

        again = await served.start(endpoint.session, endpoint.repo, endpoint.head)
        delivery = await again.records.delivery("d-cut")
        recorded = await again.records.status("hello-staging")
        assert delivery is not None
        assert recorded is not None
        assert (delivery.state, delivery.reason) == (DeliveryState.FAILED, INTERRUPTED)
        assert (recorded.state, recorded.reason) == (ReviewState.FAILED, INTERRUPTED)
        status, answer = await again.deliver("push", payload, delivery="d-cut")
        assert (status, answer["status"]) == (202, "accepted")
        await again.review_apps.idle()
        assert len(again.review_apps.plans) == 1

    async def test_a_closed_pr_whose_branch_is_gone_runs_the_predestroy_recorded_before(
        self, served: Served, endpoint: Endpoint
    ) -> None:
        """Restart between open and close; the branch is deleted: pr-predestroy still runs."""
        url = str(endpoint.repo)
        opened = payloads.pull_request("opened", 8, head_sha=endpoint.head, clone_url=url)
        assert (await endpoint.deliver("pull_request", opened))[0] == 202
        await endpoint.review_apps.idle()
        await served.stop()

        again = await served.start(endpoint.session, endpoint.repo, endpoint.head)
        closed = payloads.pull_request("closed", 8, head_sha="e" * 40, clone_url=url)
        assert (await again.deliver("pull_request", closed))[0] == 202
        await again.review_apps.idle()
        assert again.review_apps.plans == [
            ("hello-pr-8", (RunOnce("hello-pr-8", "python dump.py", "pr-predestroy"),
                            DestroyApp("hello-pr-8"))),
        ]  # fmt: skip


class TestRefusals:
    @pytest.mark.parametrize(
        ("signature", "reason"),
        [
            (None, "missing X-Hub-Signature-256 header"),
            ("sha256=" + "0" * 64, "X-Hub-Signature-256 does not match the payload"),
            (sign(b"not our secret", b"{}"), "X-Hub-Signature-256 does not match the payload"),
        ],
    )
    async def test_unsigned_or_wrongly_signed_deliveries_are_refused_and_nothing_applies(
        self, endpoint: Endpoint, signature: str | None, reason: str
    ) -> None:
        payload = payloads.pull_request(
            "opened", head_sha=endpoint.head, clone_url=str(endpoint.repo)
        )

        status, answer = await endpoint.deliver("pull_request", payload, signature=signature)

        assert (status, answer) == (401, {"status": "rejected", "reason": reason})
        assert endpoint.review_apps.plans == []
        assert endpoint.count("pull_request", "bad_signature") == 1.0

    async def test_unknown_events_and_actions_are_acknowledged_and_ignored(
        self, endpoint: Endpoint
    ) -> None:
        ping = await endpoint.deliver("ping", payloads.ping())
        labeled = await endpoint.deliver("pull_request", payloads.pull_request("labeled"))
        feature = await endpoint.deliver("push", payloads.push("refs/heads/feature"))

        assert ping == (
            202,
            {"status": "ignored", "reason": "event 'ping' is not one review apps act on"},
        )
        assert labeled[0] == feature[0] == 202
        assert labeled[1]["status"] == feature[1]["status"] == "ignored"
        assert endpoint.review_apps.plans == []

    async def test_a_signed_body_that_is_not_json_is_a_bad_request(
        self, endpoint: Endpoint
    ) -> None:
        data = b"payload=%7B%7D"
        headers = {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "d-2",
            "X-Hub-Signature-256": sign(SECRET, data),
        }
        async with endpoint.session.post(endpoint.url, data=data, headers=headers) as response:
            assert response.status == 400
            assert (await response.json())["reason"].startswith("payload: ")

    async def test_a_delivery_without_its_id_is_a_bad_request(self, endpoint: Endpoint) -> None:
        data = payloads.body(payloads.push())
        headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(SECRET, data)}
        async with endpoint.session.post(endpoint.url, data=data, headers=headers) as response:
            assert response.status == 400
            assert "X-GitHub-Delivery" in (await response.json())["reason"]

    async def test_a_delivery_id_longer_than_the_store_keeps_is_a_bad_request(
        self, endpoint: Endpoint
    ) -> None:
        """Attack: a signed delivery whose id cannot be stored must not reach a 500."""
        status, answer = await endpoint.deliver("push", payloads.push(), delivery="d" * 101)

        assert (status, answer["status"]) == (400, "rejected")
        assert answer["reason"] == "X-GitHub-Delivery is over 100 characters"
        assert endpoint.review_apps.plans == []
