"""Connecting a repository from the review-app board, in Chromium against ``slipway up``
with a builder and no review apps in the environment: the form creates and deploys the
staging app, the page shows what to paste into GitHub, and a pull request signed with the
shown secret gets its review app on the board (control/dashboard/connect.py,
control/review/pipelines.py, ControlPlane.connect)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from control.errors import ApiError
from control.review.github import sign
from control.review.pipelines import StoredPipelines, checked
from control.settings import BuildServerSettings, ReviewSettings
from control.up import Up
from tests.agent.conftest import ListSink
from tests.builds.apps import commit, git
from tests.control.conftest import up_settings
from tests.dashboard.conftest import World, screenshot
from tests.dashboard.test_review_board import SERVER, SETTLE, row_in
from tests.helpers import eventually
from tests.review.payloads import pull_request

COLLAB_PASSWORD = "collab-password-1"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = up_settings(
        tmp_path, builds=BuildServerSettings(root=str(tmp_path / "builds"), timeout=60)
    )
    sink = ListSink()
    up = Up(settings, app_sink=sink, router_sink=sink)
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(up, session)
    finally:
        await session.close()
        await up.stop()


def repository(tmp_path: Path) -> tuple[Path, str, str]:
    repo = tmp_path / "shop"
    sha = commit(repo, {"Procfile": "web: python server.py\n", "requirements.txt": "\n",
                        "server.py": SERVER})  # fmt: skip
    return repo, git(repo, "rev-parse", "--abbrev-ref", "HEAD"), sha


async def webhook(world: World, secret: str, payload: dict[str, object]) -> int:
    return await post_webhook(world.session, world.base, secret, payload)


async def post_webhook(
    session: aiohttp.ClientSession, base: str, secret: str, payload: dict[str, object]
) -> int:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret.encode(), body),
    }
    async with session.post(base + "/github/webhooks", data=body, headers=headers) as reply:
        return reply.status


async def test_a_repository_connected_from_the_form_deploys_staging_and_takes_pull_requests(
    world: World, page: Page, tmp_path: Path
) -> None:
    repo, branch, sha = repository(tmp_path)
    # Nothing connected: the webhook says so, and deploys nothing.
    assert await webhook(world, "x" * 20, pull_request("opened", 3, head_sha=sha)) == 404

    await world.sign_in(page)
    await page.get_by_role("link", name="Review apps").click()
    await page.get_by_label("Repository URL").fill(str(repo))
    await page.get_by_label("Branch").fill(branch)
    secret = await page.get_by_label("Webhook secret").input_value()
    assert len(secret) >= 16
    await page.get_by_role("button", name="Connect repository").click()
    await expect(page.locator(".flash")).to_contain_text(f"Connected {repo}")
    await expect(page.locator("#webhook-url")).to_have_text(world.base + "/github/webhooks")
    await expect(page.locator("#repository")).to_contain_text("application/json")
    await expect(page.locator("#repository")).to_contain_text("Pushes and Pull requests")
    await page.get_by_text("Show the secret").click()
    await expect(page.locator("#repository pre.secret-shown")).to_have_text(secret)
    await screenshot(page, "review-connected")

    stored = await StoredPipelines(world.control.control.store).get()
    assert stored is not None
    assert (stored.name, stored.branch, stored.webhook_secret) == ("shop", branch, secret)
    # The branch's head is deployed to the staging app by the review apps' runner.
    staging = await eventually(lambda: row_in(page, "shop-staging", "deployed"), SETTLE, 0.5)
    await expect(staging.locator("code")).to_have_text(sha[:12])

    # A pull request signed with the shown secret: its app appears on the board.
    opened = pull_request("opened", 5, head_sha=sha, clone_url=str(repo))
    assert await webhook(world, secret, opened) == 202
    row = await eventually(lambda: row_in(page, "shop-pr-5", "deployed"), SETTLE, 0.5)
    await expect(row.get_by_role("link", name="pr-5.review.localhost")).to_be_visible()
    # Signed with anything else: refused.
    assert await webhook(world, "not-the-secret-at-all", opened) == 401

    # Connected once: the form is gone, and posting it again is a conflict.
    csrf = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    again = {"csrf": csrf, "repo_url": str(repo), "branch": branch, "secret": secret,
             "domain": "review.localhost", "name": "other"}  # fmt: skip
    reply = await page.request.post(f"{world.dashboard}/review/connect", form=again)
    assert reply.status == 409


async def test_the_form_refuses_bad_input_forgeries_and_collaborators(
    world: World, page: Page, tmp_path: Path
) -> None:
    repo, branch, _ = repository(tmp_path)
    await world.sign_in(page)
    await page.goto(world.dashboard + "/review")
    csrf = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    good = {"csrf": csrf, "repo_url": str(repo), "branch": branch, "secret": "s" * 32,
            "domain": "review.localhost", "name": ""}  # fmt: skip
    cases: list[tuple[dict[str, str], int, str]] = [
        ({"repo_url": "ext::sh -c touch% /tmp/pwned"}, 400, "remote helper"),
        ({"repo_url": ""}, 400, "empty"),
        ({"branch": "a..b"}, 400, "not a git branch name"),
        ({"branch": "no-such-branch"}, 422, "has no branch"),
        ({"repo_url": str(tmp_path / "nowhere")}, 422, "cannot read"),
        ({"secret": "short"}, 400, "webhook secret"),
        ({"domain": "not a domain"}, 400, "not a DNS name"),
        ({"name": "Bad_Name"}, 400, "lowercase"),
        ({"csrf": "forged"}, 403, "CSRF"),
    ]
    for change, status, says in cases:
        reply = await page.request.post(
            f"{world.dashboard}/review/connect", form={**good, **change}, max_redirects=0
        )
        assert reply.status == status, (change, await reply.text())
        assert says in await reply.text(), change
    assert await StoredPipelines(world.control.control.store).get() is None

    # A collaborator: no form to see (404), none to post (403).
    status, body = await world.api("POST", "/apps", {"name": "team-a"})
    assert status == 201, body
    await world.control.dashboard.users.create_user(
        "collab", COLLAB_PASSWORD, admin=False, apps_=["team-a"], actor="test"
    )
    await page.context.clear_cookies()
    await world.sign_in(page, "collab", COLLAB_PASSWORD)
    reply = await page.request.get(f"{world.dashboard}/review")
    assert reply.status == 404
    csrf = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    reply = await page.request.post(
        f"{world.dashboard}/review/connect", form={**good, "csrf": csrf}, max_redirects=0
    )
    assert reply.status == 403
    assert await StoredPipelines(world.control.control.store).get() is None


async def test_a_stored_pipeline_takes_webhooks_after_a_restart_and_the_env_one_wins(
    tmp_path: Path,
) -> None:
    repo, branch, sha = repository(tmp_path)
    builds = BuildServerSettings(root=str(tmp_path / "builds"), timeout=60)
    stored = checked(repo_url=str(repo), branch=branch, secret="stored-secret-0123456789",
                     name="", domain="review.localhost", created_by="test")  # fmt: skip
    sink = ListSink()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        first = Up(up_settings(tmp_path, builds=builds), app_sink=sink, router_sink=sink)
        await first.start()
        try:
            assert first.control is not None
            await first.control.connect(stored, "user:admin")
        finally:
            await first.stop()

        # Started again from the same store: the stored pipeline answers the webhook.
        again = Up(up_settings(tmp_path, builds=builds), app_sink=sink, router_sink=sink)
        await again.start()
        try:
            assert again.control is not None
            base = f"http://127.0.0.1:{again.control.port}"
            opened = pull_request("opened", 6, head_sha=sha, clone_url=str(repo))
            assert await post_webhook(session, base, stored.webhook_secret, opened) == 202
            assert again.control.dashboard.review is not None
            assert again.control.dashboard.review.pipeline.branch == branch
            # Its review domain is reserved as the environment's is: no tenant claims it.
            control = again.control.control
            await control.create_app("team-a", actor="test")
            with pytest.raises(ApiError, match="review"):
                await control.add_domain("team-a", "pr-6.review.localhost", actor="t", tenant=True)
        finally:
            await again.stop()

        # With the environment's pipeline set, it wins: its secret, no form.
        env = ReviewSettings(webhook_secret="env-secret-0123456789", pipeline="envshop",
                             domain="review.env.test", staging_app="envshop-staging")  # fmt: skip
        third = Up(up_settings(tmp_path, builds=builds, review=env), app_sink=sink,
                   router_sink=sink)  # fmt: skip
        await third.start()
        try:
            assert third.control is not None
            assert third.control.dashboard.connect is None
            board = third.control.dashboard.review
            assert board is not None
            assert board.pipeline.name == "envshop"
            base = f"http://127.0.0.1:{third.control.port}"
            closed = pull_request("closed", 6, head_sha=sha, clone_url=str(repo))
            assert await post_webhook(session, base, stored.webhook_secret, closed) == 401
            assert await post_webhook(session, base, env.webhook_secret, closed) == 202
        finally:
            await third.stop()
