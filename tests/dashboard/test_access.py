"""Who reaches what, from the attacker's side, in Chromium against ``slipway up``:
collaborators see only their apps, forged requests and planted sessions are refused,
guessing passwords is throttled."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner
from playwright.async_api import Browser, Page, expect

from control.dashboard.cli import login_password, users_create
from tests.control.conftest import ADMIN_TOKEN
from tests.dashboard.conftest import World, screenshot

COLLAB_PASSWORD = "collab-password-1"


async def two_teams(world: World) -> None:
    for name in ("team-a", "team-b"):
        status, body = await world.api("POST", "/apps", {"name": name})
        assert status == 201, body
    await world.control.dashboard.users.create_user(
        "collab", COLLAB_PASSWORD, admin=False, apps_=["team-a"], actor="test"
    )


async def csrf_of(page: Page) -> str:
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    return token


class TestCollaborators:
    async def test_a_collaborator_sees_only_their_apps_in_the_list_and_by_url(
        self, world: World, page: Page
    ) -> None:
        await two_teams(world)
        await world.sign_in(page, "collab", COLLAB_PASSWORD)
        rows = page.locator("#apps tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-app", "team-a")
        await screenshot(page, "apps-collaborator")
        # Another team's app is no app at all: 404, as for a name that does not exist.
        response = await page.goto(world.dashboard + "/apps/team-b")
        assert response is not None
        assert response.status == 404
        missing = await page.goto(world.dashboard + "/apps/no-such-app")
        assert missing is not None
        assert missing.status == 404
        await page.goto(world.dashboard + "/apps/team-a")
        csrf = await csrf_of(page)
        # ...and changing it is refused the same way, with a valid CSRF token.
        forged = await page.request.post(
            world.dashboard + "/apps/team-b/config",
            form={"csrf": csrf, "key": "PWNED", "value": "1", "confirm": "yes"},
            max_redirects=0,
        )
        assert forged.status == 404
        status, config = await world.api("GET", "/apps/team-b/config-vars")
        assert (status, config) == (200, {})
        users = await page.goto(world.dashboard + "/users")
        assert users is not None
        assert users.status == 403

    async def test_a_collaborators_cli_token_reaches_their_apps_only(
        self, world: World, tmp_path: Path
    ) -> None:
        await two_teams(world)
        env = {"SLIPWAY_API_URL": world.base, "XDG_CONFIG_HOME": str(tmp_path)}
        result = await asyncio.to_thread(
            CliRunner().invoke,
            login_password,
            ["--user", "collab"],
            input=COLLAB_PASSWORD + "\n",
            env=env,
        )
        assert result.exit_code == 0, result.output
        assert "Logged in as collab (team-a)" in result.output
        token = (tmp_path / "slipway" / "token").read_text().strip()
        status, apps = await world.api("GET", "/apps", token=token)
        assert status in (200, 206)
        assert isinstance(apps, list)
        assert [a["name"] for a in apps] == ["team-a"]
        assert (await world.api("GET", "/apps/team-a/config-vars", token=token))[0] == 200
        assert (await world.api("GET", "/apps/team-b/config-vars", token=token))[0] == 403
        assert (await world.api("POST", "/apps", {"name": "mine"}, token=token))[0] == 403
        status, audit = await world.api("GET", "/audit", token=ADMIN_TOKEN)
        assert status in (200, 206)
        assert isinstance(audit, list)
        assert any(e["action"] == "token.create" and e["actor"] == "user:collab" for e in audit)

    async def test_a_wrong_password_gets_no_token(self, world: World, tmp_path: Path) -> None:
        env = {"SLIPWAY_API_URL": world.base, "XDG_CONFIG_HOME": str(tmp_path)}
        result = await asyncio.to_thread(
            CliRunner().invoke, login_password, ["--user", "admin", "--password", "nope"], env=env
        )
        assert result.exit_code == 1
        assert "wrong user name or password" in result.output
        assert not (tmp_path / "slipway" / "token").exists()


class TestForgery:
    async def test_a_state_change_without_the_sessions_csrf_token_is_refused(
        self, world: World, page: Page
    ) -> None:
        await world.api("POST", "/apps", {"name": "hello"})
        await world.sign_in(page)
        await page.goto(world.dashboard + "/apps/hello")
        csrf = await csrf_of(page)
        url = world.dashboard + "/apps/hello/config"
        change: dict[str, str | float | bool] = {
            "key": "GREETING",
            "value": "forged",
            "confirm": "yes",
        }
        missing = await page.request.post(url, form=change, max_redirects=0)
        assert missing.status == 403
        assert "CSRF" in await missing.text()
        wrong = await page.request.post(url, form={**change, "csrf": "x" * 43}, max_redirects=0)
        assert wrong.status == 403
        logout = await page.request.post(world.dashboard + "/logout", max_redirects=0)
        assert logout.status == 403
        status, config = await world.api("GET", "/apps/hello/config-vars")
        assert (status, config) == (200, {})
        # The same request with the token (here in the fetch header) goes through.
        right = await page.request.post(
            url, form=change, headers={"X-CSRF-Token": csrf}, max_redirects=0
        )
        assert right.status == 303
        status, config = await world.api("GET", "/apps/hello/config-vars")
        assert (status, config) == (200, {"GREETING": "forged"})

    async def test_the_sign_in_form_needs_its_own_token(self, world: World, page: Page) -> None:
        await page.goto(world.dashboard + "/login")
        forged = await page.request.post(
            world.dashboard + "/login",
            form={"user": "admin", "password": world.password, "csrf": "forged"},
            max_redirects=0,
        )
        assert forged.status == 403
        assert SESSION not in {c["name"] for c in await page.context.cookies()}


SESSION = "slipway_session"


class TestSessionFixation:
    async def test_a_planted_session_id_is_never_the_one_signed_in(
        self, world: World, browser: Browser
    ) -> None:
        await two_teams(world)
        attacker = await browser.new_context()
        victim = await browser.new_context()
        try:
            # The attacker signs in (as the collaborator) and plants that id in the victim's
            # browser, hoping to ride the admin's session once the victim signs in with it.
            their_page = await attacker.new_page()
            await world.sign_in(their_page, "collab", COLLAB_PASSWORD)
            planted = next(c["value"] for c in await attacker.cookies() if c["name"] == SESSION)
            await victim.add_cookies([{"name": SESSION, "value": planted, "url": world.base}])
            victim_page = await victim.new_page()
            await world.sign_in(victim_page)
            ours = [c for c in await victim.cookies() if c["name"] == SESSION]
            # The planted cookie (path /) may stay in the jar; the dashboard's is another id.
            assert [c["path"] for c in ours if c["value"] != planted] == ["/dashboard"]
            # The planted id is ended, not promoted: the attacker is signed out.
            await their_page.goto(world.dashboard + "/")
            await expect(their_page).to_have_url(re.compile(r".*/dashboard/login\?next=.*"))
            # A made-up id is not adopted either.
            await victim.clear_cookies()
            await victim.add_cookies([{"name": SESSION, "value": "chosen-id", "url": world.base}])
            await world.sign_in(victim_page)
            cookie = next(
                c for c in await victim.cookies() if c["name"] == SESSION and c["path"] != "/"
            )
            assert cookie["value"] != "chosen-id"
            assert cookie["httpOnly"]
            assert cookie["sameSite"] == "Lax"
        finally:
            await attacker.close()
            await victim.close()


class TestThrottling:
    async def test_failed_sign_ins_are_throttled_per_user_with_retry_after(
        self, world: World, page: Page
    ) -> None:
        clock = [1000.0]
        world.control.dashboard.clock = lambda: clock[0]
        await page.goto(world.dashboard + "/login")
        for _ in range(5):
            await page.get_by_label("User").fill("admin")
            await page.get_by_label("Password").fill("not-the-password")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("alert")).to_contain_text("wrong user name or password")
        # Locked now: even the right password waits, and the page says how long.
        response = await page.request.post(
            world.dashboard + "/token", data={"user": "admin", "password": world.password}
        )
        assert response.status == 429
        assert int(response.headers["retry-after"]) >= 1
        await page.get_by_label("User").fill("admin")
        await page.get_by_label("Password").fill(world.password)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("too many failed sign-ins")
        await screenshot(page, "login-throttled")
        clock[0] += 3  # past the first lockout (2 s)
        await world.sign_in(page)

    async def test_failed_sign_ins_are_throttled_per_address_across_user_names(
        self, world: World, page: Page
    ) -> None:
        world.control.dashboard.clock = lambda: 1000.0
        for n in range(20):
            response = await page.request.post(
                world.dashboard + "/token", data={"user": f"guess{n}", "password": "x"}
            )
            assert response.status == 401, n
        response = await page.request.post(
            world.dashboard + "/token", data={"user": "admin", "password": world.password}
        )
        assert response.status == 429


@pytest.mark.parametrize(("forwarded", "secure"), [(None, False), ("https", True), ("http", False)])
async def test_the_session_cookie_is_secure_when_served_over_https(
    world: World, forwarded: str | None, secure: bool
) -> None:
    headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
    async with world.session.get(world.dashboard + "/login", headers=headers) as response:
        cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


class TestNavigation:
    async def test_signing_in_returns_to_the_page_asked_for_and_nowhere_else(
        self, world: World, page: Page
    ) -> None:
        await world.api("POST", "/apps", {"name": "hello"})
        await page.goto(world.dashboard + "/apps/hello#config")
        await expect(page).to_have_url(re.compile(r".*/login\?next=/dashboard/apps/hello"))
        await page.get_by_label("User").fill("admin")
        await page.get_by_label("Password").fill(world.password)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(world.dashboard + "/apps/hello")
        # Another site is never a destination (no open redirect).
        await page.context.clear_cookies()
        await page.goto(world.dashboard + "/login?next=//evil.example/")
        await page.get_by_label("User").fill("admin")
        await page.get_by_label("Password").fill(world.password)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(world.dashboard + "/")

    async def test_a_second_load_of_the_sign_in_page_does_not_void_the_first_form(
        self, world: World
    ) -> None:
        """Two tabs, or a lapsed page's background fetch sent to the sign-in page: the form
        loaded first still signs in (its token is the browser's, not the page load's)."""
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:

            async def form() -> str:
                async with http.get(world.dashboard + "/login") as reply:
                    found = re.search(r'name="csrf" value="([^"]+)"', await reply.text())
                assert found is not None
                return found.group(1)

            first = await form()
            assert await form() == first
            login = {"user": "admin", "password": world.password, "csrf": first, "next": ""}
            async with http.post(world.dashboard + "/login", data=login) as reply:
                assert reply.status == 200
                assert str(reply.url) == world.dashboard + "/"
            # A cookie not of the token's shape is replaced, not echoed into the page.
            jar.clear()
            jar.update_cookies({"slipway_login_csrf": "<x>"}, response_url=reply.url)
            assert re.fullmatch(r"[A-Za-z0-9_-]{43}", await form())

    async def test_no_link_can_make_a_page_say_something(self, world: World, page: Page) -> None:
        await world.sign_in(page)
        await page.goto(world.dashboard + "/?flash=Your+session+expired%3A+call+555-0100")
        await expect(page.get_by_role("heading", name="Apps")).to_be_visible()
        assert await page.locator(".flash").count() == 0

    async def test_pages_are_never_framed_cached_or_given_foreign_scripts(
        self, world: World, page: Page
    ) -> None:
        response = await page.goto(world.dashboard + "/login")
        assert response is not None
        headers = response.headers
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["cache-control"] == "no-store"


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "status"),
        [("not json", 400), ('{"user": "admin"}', 400), ('["admin", "pw"]', 400)],
    )
    async def test_the_token_endpoint_says_what_it_needs(
        self, world: World, body: str, status: int
    ) -> None:
        async with world.session.post(
            world.dashboard + "/token", data=body, headers={"Content-Type": "application/json"}
        ) as reply:
            assert reply.status == status
            assert "password" in (await reply.json())["message"]

    @pytest.mark.parametrize(
        ("path", "form", "status", "says"),
        [
            ("/apps", {"name": "Bad Name"}, 422, "invalid"),
            ("/apps/hello/config", {}, 400, "give a name and value"),
            ("/apps/hello/config", {"env": "no equals sign"}, 400, "line 1"),
            ("/apps/hello/config", {"key": "1BAD", "value": "x"}, 422, "invalid"),
            ("/apps/hello/config", {"changes": "{not json", "confirm": "yes"}, 400, "JSON"),
            ("/apps/hello/formation", {"type": "web", "quantity": "lots"}, 400, "whole number"),
            ("/apps/hello/formation", {"type": "web", "idle_after": "soon"}, 400, "idle time"),
            ("/apps/hello/formation", {"type": "web", "quantity": "-1"}, 422, "quantity"),
            ("/apps/hello/addons", {"plan": ""}, 400, "choose a plan"),
            ("/apps/hello/addons", {"plan": "mysql"}, 422, "mysql"),
            ("/apps/hello/releases/abc/rollback", {}, 400, "positive number"),
            ("/apps/hello/releases/99/rollback", {}, 404, "99"),
            ("/apps/hello/domains", {"hostname": "a..b"}, 422, "invalid"),
            ("/users", {"name": "bob", "password": "short"}, 400, "at least 12"),
        ],
    )
    async def test_bad_input_is_a_clear_4xx_page(
        self,
        world: World,
        page: Page,
        path: str,
        form: dict[str, str | float | bool],
        status: int,
        says: str,
    ) -> None:
        await world.api("POST", "/apps", {"name": "hello"})
        await world.sign_in(page)
        csrf = await csrf_of(page)
        reply = await page.request.post(
            world.dashboard + path, form={**form, "csrf": csrf}, max_redirects=0
        )
        assert reply.status == status, await reply.text()
        assert says in await reply.text()


class TestEscaping:
    async def test_values_from_tenants_are_shown_as_text_never_as_markup(
        self, world: World, page: Page, tmp_path: Path
    ) -> None:
        evil = '<img src=x id=injected onerror="document.title=1">'
        await world.api("POST", "/apps", {"name": "hello"})
        code = tmp_path / "code"
        code.mkdir()
        (code / "app.py").write_text("print('hi')\n")
        status, _ = await world.api(
            "PATCH", "/apps/hello/config-vars", {"EVIL": evil + '"><script>x=1</script>'}
        )
        assert status == 200
        status, _ = await world.api(
            "POST",
            "/apps/hello/releases",
            {"artifact": str(code), "procfile": {"web": "python app.py"}, "description": evil},
        )
        assert status == 201
        await world.sign_in(page)
        await expect(page.locator("#apps td.release")).to_contain_text("<img src=x")
        await page.goto(world.dashboard + "/apps/hello")
        await expect(page.locator("#releases")).to_contain_text("<img src=x")
        assert await page.locator("#injected").count() == 0
        assert await page.locator("main script").count() == 0
        value = await page.get_by_label("Value of EVIL").input_value()
        assert value == evil + '"><script>x=1</script>'


class TestUsersFromTheCli:
    async def test_an_admin_token_adds_a_user_who_can_then_sign_in(
        self, world: World, page: Page, tmp_path: Path
    ) -> None:
        await world.api("POST", "/apps", {"name": "team-a"})
        env = {"SLIPWAY_API_URL": world.base, "SLIPWAY_TOKEN": ADMIN_TOKEN}
        result = await asyncio.to_thread(
            CliRunner().invoke,
            users_create,
            ["collab", "--app", "team-a"],
            input=f"{COLLAB_PASSWORD}\n{COLLAB_PASSWORD}\n",
            env=env,
        )
        assert result.exit_code == 0, result.output
        assert "Added collab (team-a)" in result.output
        await world.sign_in(page, "collab", COLLAB_PASSWORD)
        await expect(page.locator("#apps tbody tr")).to_have_count(1)

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            ({"name": "bob"}, 400),
            ({"name": "bob", "password": "x" * 12, "apps": "team-a"}, 400),
            ({"name": "bob", "password": "short"}, 400),
            ({"name": "bob", "password": "x" * 12, "apps": ["no-such-app"]}, 404),
        ],
    )
    async def test_bad_users_are_refused_with_what_to_fix(
        self, world: World, body: dict[str, object], status: int
    ) -> None:
        code, reply = await world.api("POST", "/dashboard/api/users", body)
        assert code == status
        assert isinstance(reply, dict)
        assert reply["message"]

    async def test_only_an_admin_token_adds_users(self, world: World) -> None:
        await two_teams(world)
        code, reply = await world.api(
            "POST", "/dashboard/token", {"user": "collab", "password": COLLAB_PASSWORD}
        )
        assert code == 201
        assert isinstance(reply, dict)
        body = {"name": "mallory", "password": "x" * 12, "admin": True}
        code, _ = await world.api("POST", "/dashboard/api/users", body, token=reply["token"])
        assert code == 403
        assert (await world.api("POST", "/dashboard/api/users", body, token="slw_nope"))[0] == 401
