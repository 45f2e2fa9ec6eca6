"""Deploying a branch from an app's page, against ``slipway up`` with its local builder and
a git repository on disk as the app's source: the form on the page, the branch checked
and resolved, confirmed, built through ``Builds.create`` with the branch and commit
recorded, and the build's output streaming into its page in Chromium without a reload
(control/dashboard/deploy.py, deploying.py, live_views.py, static/live-build.js)."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from control.review.pipelines import checked
from tests.agent.conftest import running_up
from tests.builds.apps import commit, git, python_app
from tests.control.conftest import builder_up_settings
from tests.dashboard.conftest import World, screenshot

PASSWORD = "deploy-password-1"
#: Seconds a build may take here: a loaded machine makes seconds of pip and slug many.
BUILD_TIMEOUT = 180.0
BUILD_MS = int(BUILD_TIMEOUT * 1000)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """``slipway up`` with a local builder whose output goes to the logs service."""
    async with running_up(builder_up_settings(tmp_path), timeout=60) as (up, session):
        yield World(up, session)


def repository(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository on disk with ``main`` and ``feature/x`` at different commits."""
    repo = tmp_path / "shop-src"
    main = commit(repo, python_app(deps=False))
    git(repo, "branch", "-M", "main")
    git(repo, "checkout", "-q", "-b", "feature/x")
    feature = commit(repo, {"feature.txt": "x\n"}, message="feature")
    git(repo, "checkout", "-q", "main")
    return repo, main, feature


async def first_build(world: World, repo: Path, sha: str, app: str = "shop") -> None:
    """``app`` made and built once from ``repo`` through the API, as builds:create does:
    from then on the dashboard knows its source."""
    status, body = await world.api("POST", "/apps", {"name": app})
    assert status == 201, body
    status, body = await world.api(
        "POST", f"/apps/{app}/builds", {"source_blob": {"url": str(repo), "version": sha}}
    )
    assert status == 201, body
    assert isinstance(body, dict)
    await finished(world, app, body["id"])


async def finished(world: World, app: str, build_id: str) -> Any:
    builds = world.control.builds
    assert builds is not None
    async with asyncio.timeout(BUILD_TIMEOUT):
        return await builds.wait(app, build_id)


async def builds_of(world: World, app: str) -> list[dict[str, Any]]:
    status, body = await world.api("GET", f"/apps/{app}/builds")
    assert status == 200, body
    assert isinstance(body, list)
    return body


async def signed_in(world: World, user: str, password: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=60)
    )
    async with session.get(f"{world.dashboard}/login") as reply:
        found = re.search(r'name="csrf" value="([^"]+)"', await reply.text())
        assert found is not None
    form = {"user": user, "password": password, "csrf": found.group(1)}
    async with session.post(f"{world.dashboard}/login", data=form) as reply:
        assert reply.status == 200, await reply.text()
    return session


async def page_csrf(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as reply:
        text = await reply.text()
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', text)
    return reply.status, text, found.group(1) if found else ""


def deploy_section(text: str) -> str:
    found = re.search(r'<section id="deploy">.*?</section>', text, re.S)
    assert found is not None, text
    return found.group(0)


async def deploy(
    session: aiohttp.ClientSession, world: World, app: str, form: dict[str, str]
) -> tuple[int, str, str]:
    async with session.post(
        f"{world.dashboard}/apps/{app}/deploy", data=form, allow_redirects=False
    ) as reply:
        return reply.status, await reply.text(), reply.headers.get("Location", "")


async def test_an_admin_deploys_a_branch_and_the_build_records_it(
    world: World, tmp_path: Path
) -> None:
    repo, main, feature = repository(tmp_path)
    await first_build(world, repo, main)
    status, body = await world.api("POST", "/apps", {"name": "unbuilt"})
    assert status == 201, body
    session = await signed_in(world, "admin", world.password)
    try:
        # No known source: the section says how to deploy, and has no form.
        status, text, csrf = await page_csrf(session, f"{world.dashboard}/apps/unbuilt")
        assert status == 200
        section = deploy_section(text)
        assert "slipway builds:create --git URL --ref BRANCH -a unbuilt" in section
        assert "<form" not in section
        status, text, _ = await deploy(session, world, "unbuilt", {"csrf": csrf, "branch": "main"})
        assert status == 409, text
        assert "no known source" in text

        # A known source: the form, offering main (the last build named no branch).
        status, text, csrf = await page_csrf(session, f"{world.dashboard}/apps/shop")
        section = deploy_section(text)
        assert f"<code>{repo}</code>" in section
        assert 'name="branch"' in section
        assert 'value="main"' in section
        before = len(await builds_of(world, "shop"))

        # Names git would refuse: a 400 on the page, the message by the field, no build.
        for bad, says in [
            ("a..b", "holds '..'"),
            ("-x", "starts with '-'"),
            ("has space", "holds a space"),
            ("ctl\x01char", "control character"),
            ("x.lock", "ends with '.lock'"),
            ("", "it is empty"),
        ]:
            status, text, _ = await deploy(session, world, "shop", {"csrf": csrf, "branch": bad})
            assert status == 400, (bad, text)
            alert = re.search(r'<p class="error" role="alert" id="deploy-error">(.*?)</p>', text)
            assert alert is not None, (bad, text)
            assert says in html.unescape(alert.group(1)), (bad, alert.group(1))
            assert 'id="deploy-branch"' in text  # the app page, its form again
        # A branch the repository does not have: 422, said the same way.
        status, text, _ = await deploy(session, world, "shop", {"csrf": csrf, "branch": "nope"})
        assert status == 422, text
        assert "has no branch 'nope'" in html.unescape(text)
        # No CSRF token, or another: 403, nothing started.
        for forged in ({"branch": "main"}, {"branch": "main", "csrf": "x" * 43}):
            status, text, _ = await deploy(session, world, "shop", {**forged, "confirm": "yes"})
            assert status == 403, text
            assert "CSRF" in text
        assert len(await builds_of(world, "shop")) == before

        # A good branch: first its commit to confirm, still nothing started...
        status, text, _ = await deploy(
            session, world, "shop", {"csrf": csrf, "branch": "feature/x"}
        )
        assert status == 200, text
        assert f'<code id="deploy-commit">{feature}</code>' in text
        assert len(await builds_of(world, "shop")) == before
        # ...then, confirmed, a build of that commit, and its page.
        status, text, location = await deploy(
            session, world, "shop", {"csrf": csrf, "branch": "feature/x", "confirm": "yes"}
        )
        assert status == 303, text
        found = re.fullmatch(r"/dashboard/apps/shop/builds/([0-9a-f]+)", location)
        assert found is not None, location
        build = await finished(world, "shop", found.group(1))
        assert (build.source_ref, build.source_version, build.commit) == (
            "feature/x",
            feature,
            feature,
        )
        assert build.source_url == str(repo)
        assert build.actor == "user:admin"
        assert build.status == "succeeded", build.output
        assert len(await builds_of(world, "shop")) == before + 1

        # The audit entry, in the API and in the app's activity.
        status, audit = await world.api("GET", "/apps/shop/audit")
        assert status == 200
        assert isinstance(audit, list)
        created = [e for e in audit if e["detail"].get("build") == build.id and
                   e["action"] == "build.create"]  # fmt: skip
        assert len(created) == 1
        assert created[0]["detail"]["ref"] == "feature/x"
        assert created[0]["detail"]["version"] == feature
        assert created[0]["actor"] == "user:admin"
        status, text, _ = await page_csrf(session, f"{world.dashboard}/apps/shop")
        assert f"deployed feature/x (commit {feature[:7]})" in text
        assert "by user:admin" in text
        # The next deploy offers the branch deployed last.
        assert 'value="feature/x"' in deploy_section(text)
        # The build's page says the branch, and its state reads as the page's cells.
        status, text, _ = await page_csrf(session, f"{world.base}{location}")
        assert status == 200
        assert "<code>feature/x</code>" in text
        async with session.get(f"{world.base}{location}/state") as reply:
            state = await reply.json()
        assert state["status"] == "succeeded"
        assert re.search(r">v\d+</a>", state["release_html"]), state
    finally:
        await session.close()


async def test_only_users_who_may_deploy_the_app_can_and_with_the_apis_source_checks(
    world: World, tmp_path: Path
) -> None:
    repo, main, _ = repository(tmp_path)
    await first_build(world, repo, main)
    status, body = await world.api("POST", "/apps", {"name": "elsewhere"})
    assert status == 201, body
    users = world.control.dashboard.users
    await users.create_user("other", PASSWORD, admin=False, apps_=["elsewhere"], actor="test")
    await users.create_user("member", PASSWORD, admin=False, apps_=["shop"], actor="test")
    before = len(await builds_of(world, "shop"))

    # A collaborator on another app: 404, as for its pages and other changes.
    other = await signed_in(world, "other", PASSWORD)
    try:
        _, _, csrf = await page_csrf(other, f"{world.dashboard}/apps/elsewhere")
        assert csrf
        for form in ({"csrf": csrf, "branch": "main"}, {"csrf": csrf, "branch": "main",
                                                        "confirm": "yes"}):  # fmt: skip
            status, text, _ = await deploy(other, world, "shop", form)
            assert status == 404, text
    finally:
        await other.close()

    # A collaborator on the app has the form; its source is a path on this machine, which
    # only an admin may build from (builds:create's check): 403 on the page, nothing built.
    member = await signed_in(world, "member", PASSWORD)
    try:
        status, text, csrf = await page_csrf(member, f"{world.dashboard}/apps/shop")
        assert status == 200
        assert 'name="branch"' in deploy_section(text)
        status, text, _ = await deploy(
            member, world, "shop", {"csrf": csrf, "branch": "main", "confirm": "yes"}
        )
        assert status == 403, text
        assert "needs an admin token" in text
        assert 'id="deploy-error"' in text
    finally:
        await member.close()
    assert len(await builds_of(world, "shop")) == before


async def test_deploy_in_the_browser_streams_the_builds_output_and_its_release(
    world: World, page: Page, tmp_path: Path
) -> None:
    repo, main, _ = repository(tmp_path)
    await first_build(world, repo, main)
    # A change on main, so the deploy builds a commit not built before; with a dependency
    # to install, so it builds for seconds: long enough to watch.
    head = commit(repo, python_app(), message="a dependency")
    await world.sign_in(page)
    await page.goto(world.dashboard + "/apps/shop")
    section = page.locator("#deploy")
    await expect(section.get_by_label("Branch")).to_have_value("main")
    await section.get_by_role("button", name="Deploy branch…").click()
    await expect(page.locator("#deploy-commit")).to_have_text(head)
    await page.get_by_role("button", name="Deploy main").click()
    await page.wait_for_url(re.compile(r".*/apps/shop/builds/[0-9a-f]+$"))
    build_id = page.url.rsplit("/", 1)[1]
    opened_while = await page.locator("#build-status").get_attribute("data-state")
    await page.evaluate("window.sameDocument = true")  # gone if anything reloads the page
    output = page.locator("#live-logs")
    await expect(output.locator(".ll-row", has_text="Python app detected")).to_have_count(
        1, timeout=BUILD_MS
    )
    await expect(output.locator(".ll-row", has_text="Released v")).to_have_count(
        1, timeout=BUILD_MS
    )
    # The status and the release follow without a reload (live-build.js).
    await expect(page.locator("#build-status")).to_have_attribute(
        "data-state", "succeeded", timeout=BUILD_MS
    )
    await expect(page.locator("#build-release a")).to_have_text(re.compile(r"^v\d+$"))
    assert opened_while == "pending"
    assert await page.evaluate("window.sameDocument === true")
    await screenshot(page, "deploy-build")
    build = await finished(world, "shop", build_id)
    assert (build.source_ref, build.commit) == ("main", head)
    # The activity says who deployed what, once the page is opened again.
    await page.goto(world.dashboard + "/apps/shop")
    entry = page.locator('#activity li[data-action="build.create"]').first
    await expect(entry).to_contain_text(f"deployed main (commit {head[:7]})")
    await expect(entry).to_contain_text("by user:admin")


async def test_the_connected_pipelines_staging_app_offers_its_repository_and_branch(
    world: World, tmp_path: Path
) -> None:
    repo, _, feature = repository(tmp_path)
    git(repo, "branch", "trunk", "feature/x")  # the pipeline's branch: neither main nor a default
    stored = checked(repo_url=str(repo), branch="trunk", secret="stored-secret-0123456789",
                     name="shop", domain="review.localhost", created_by="test")  # fmt: skip
    await world.control.connect(stored, "user:admin")
    session = await signed_in(world, "admin", world.password)
    try:
        status, text, csrf = await page_csrf(session, f"{world.dashboard}/apps/shop-staging")
        assert status == 200, text
        section = deploy_section(text)
        assert f"<code>{repo}</code> (the connected pipeline&#x27;s)" in section
        assert 'value="trunk"' in section
        status, text, _ = await deploy(
            session, world, "shop-staging", {"csrf": csrf, "branch": "trunk"}
        )
        assert status == 200, text
        assert f'<code id="deploy-commit">{feature}</code>' in text
    finally:
        await session.close()
