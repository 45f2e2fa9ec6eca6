"""The webhook endpoint on a real aiohttp server on loopback, with GitHub-shaped deliveries."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from control.review.github import MemoryDeliveries, sign
from control.review.plan import Build, DestroyApp, EnsureApp, Pipeline, Plan, Release, RunOnce
from control.review.source import GitAppJson
from control.review.webhook import WebhookConfig, webhook_app
from tests.builds.apps import commit
from tests.review import payloads

SECRET = b"webhook secret for tests"
PIPELINE = Pipeline(name="hello", domain="review.example.test", staging_app="hello-staging")
APP_JSON = {
    "env": {"SECRET_KEY": {"generator": "secret"}},
    "environments": {"review": {"addons": ["heroku-postgresql"]}},
    "scripts": {"postdeploy": "python seed.py", "pr-predestroy": "python dump.py"},
}


@dataclass
class RecordingReviewApps:
    """The ReviewApps seam, keeping every plan handed to it."""

    plans: list[Plan] = field(default_factory=list)
    fail_next: bool = False

    async def apply(self, plan: Plan) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("control plane unavailable")
        self.plans.append(plan)


@dataclass
class Endpoint:
    url: str
    session: aiohttp.ClientSession
    review_apps: RecordingReviewApps
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


@pytest.fixture
async def endpoint(tmp_path: Path, unused_port: int) -> AsyncIterator[Endpoint]:
    repo = tmp_path / "hello-world"
    head = commit(repo, {"app.json": json.dumps(APP_JSON), "Procfile": "web: python app.py\n"})
    review_apps = RecordingReviewApps()
    registry = CollectorRegistry()
    parent = web.Application()
    parent.add_subapp(
        "/github",
        webhook_app(
            WebhookConfig(secret=SECRET, pipeline=PIPELINE),
            deliveries=MemoryDeliveries(),
            review_apps=review_apps,
            app_json=GitAppJson(),
            registry=registry,
        ),
    )
    runner = web.AppRunner(parent)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_port)
    await site.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            yield Endpoint(
                f"http://127.0.0.1:{unused_port}/github/webhooks",
                session,
                review_apps,
                registry,
                repo,
                head,
            )
    finally:
        await runner.cleanup()


async def test_an_opened_pull_request_hands_a_create_plan_configured_from_app_json(
    endpoint: Endpoint,
) -> None:
    payload = payloads.pull_request(
        "opened", 42, head_sha=endpoint.head, clone_url=str(endpoint.repo)
    )

    status, answer = await endpoint.deliver("pull_request", payload)

    assert status == 202
    assert answer["status"] == "accepted"
    assert [a["type"] for a in answer["actions"]] == ["EnsureApp", "Build", "Release", "RunOnce"]
    (plan,) = endpoint.review_apps.plans
    ensure = plan.actions[0]
    assert isinstance(ensure, EnsureApp)
    assert (ensure.app, ensure.host) == ("hello-pr-42", "pr-42.review.example.test")
    assert [a.kind.value for a in ensure.addons] == ["postgres"]
    assert plan.actions[1:] == (
        Build("hello-pr-42", str(endpoint.repo), endpoint.head),
        Release("hello-pr-42"),
        RunOnce("hello-pr-42", "python seed.py", "postdeploy"),
    )
    assert endpoint.count("pull_request", "accepted") == 1.0


async def test_a_closed_pull_request_hands_a_destroy_plan_with_predestroy_first(
    endpoint: Endpoint,
) -> None:
    payload = payloads.pull_request(
        "closed", 42, head_sha=endpoint.head, merged=True, clone_url=str(endpoint.repo)
    )

    status, _ = await endpoint.deliver("pull_request", payload)

    assert status == 202
    (plan,) = endpoint.review_apps.plans
    assert plan.actions == (
        RunOnce("hello-pr-42", "python dump.py", "pr-predestroy"),
        DestroyApp("hello-pr-42"),
    )


async def test_a_closed_pull_request_whose_branch_is_gone_is_still_destroyed(
    endpoint: Endpoint,
) -> None:
    payload = payloads.pull_request("closed", 9, head_sha="f" * 40, clone_url=str(endpoint.repo))

    status, _ = await endpoint.deliver("pull_request", payload)

    assert status == 202
    assert endpoint.review_apps.plans[0].actions == (DestroyApp("hello-pr-9"),)


async def test_a_push_to_main_hands_a_staging_deploy(endpoint: Endpoint) -> None:
    status, answer = await endpoint.deliver("push", payloads.push(after=endpoint.head))

    assert status == 202
    assert answer["summary"].endswith("deploy hello-staging")
    assert endpoint.review_apps.plans[0].actions[0] == Build(
        "hello-staging", "https://github.com/octo-org/hello-world.git", endpoint.head
    )


async def test_a_redelivered_webhook_is_acknowledged_and_applied_once(endpoint: Endpoint) -> None:
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
    assert len(endpoint.review_apps.plans) == 1
    assert endpoint.count("pull_request", "duplicate") == 1.0


async def test_a_delivery_that_failed_to_apply_goes_through_when_github_redelivers(
    endpoint: Endpoint,
) -> None:
    payload = payloads.push(after=endpoint.head)
    endpoint.review_apps.fail_next = True

    async with endpoint.session.post(
        endpoint.url,
        data=payloads.body(payload),
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "d-1",
            "X-Hub-Signature-256": sign(SECRET, payloads.body(payload)),
        },
    ) as response:
        assert response.status == 500
    status, answer = await endpoint.deliver("push", payload, delivery="d-1")

    assert (status, answer["status"]) == (202, "accepted")
    assert len(endpoint.review_apps.plans) == 1
    assert endpoint.count("push", "failed") == 1.0


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "missing X-Hub-Signature-256 header"),
        ("sha256=" + "0" * 64, "X-Hub-Signature-256 does not match the payload"),
        (sign(b"not our secret", b"{}"), "X-Hub-Signature-256 does not match the payload"),
    ],
)
async def test_unsigned_or_wrongly_signed_deliveries_are_refused_and_nothing_applies(
    endpoint: Endpoint, signature: str | None, reason: str
) -> None:
    payload = payloads.pull_request("opened", head_sha=endpoint.head, clone_url=str(endpoint.repo))

    status, answer = await endpoint.deliver("pull_request", payload, signature=signature)

    assert (status, answer) == (401, {"status": "rejected", "reason": reason})
    assert endpoint.review_apps.plans == []
    assert endpoint.count("pull_request", "bad_signature") == 1.0


async def test_unknown_events_and_actions_are_acknowledged_and_ignored(endpoint: Endpoint) -> None:
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


async def test_a_signed_body_that_is_not_json_is_a_bad_request(endpoint: Endpoint) -> None:
    data = b"payload=%7B%7D"
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-2",
        "X-Hub-Signature-256": sign(SECRET, data),
    }
    async with endpoint.session.post(endpoint.url, data=data, headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["reason"].startswith("payload: ")


async def test_a_delivery_without_its_id_is_a_bad_request(endpoint: Endpoint) -> None:
    data = payloads.body(payloads.push())
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(SECRET, data)}
    async with endpoint.session.post(endpoint.url, data=data, headers=headers) as response:
        assert response.status == 400
        assert "X-GitHub-Delivery" in (await response.json())["reason"]


async def test_an_invalid_app_json_on_the_branch_is_reported_and_not_applied(
    endpoint: Endpoint,
) -> None:
    bad = commit(endpoint.repo, {"app.json": '{"addons": ["mongolab"]}'})
    payload = payloads.pull_request("synchronize", 42, head_sha=bad, clone_url=str(endpoint.repo))

    status, answer = await endpoint.deliver("pull_request", payload)

    assert status == 422
    assert "add-on 'mongolab' is not provided here" in answer["reason"]
    assert endpoint.review_apps.plans == []
