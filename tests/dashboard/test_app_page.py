"""The app page's other controls in Chromium: domains with their DNS record, formation,
restart, add-ons with credentials on request, and admins adding a collaborator; all of it
reachable by keyboard."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.dashboard.conftest import World, screenshot
from tests.dashboard.test_browser import deploy


async def test_domains_show_the_dns_record_to_create_and_go_away(world: World, page: Page) -> None:
    await world.api("POST", "/apps", {"name": "shop"})
    await world.sign_in(page)
    await page.goto(world.dashboard + "/apps/shop#domains")
    await page.get_by_label("Domain", exact=True).fill("www.shop.example.org")
    await page.get_by_role("button", name="Add domain").click()
    await expect(page.locator(".flash")).to_contain_text("Added www.shop.example.org")
    row = page.locator("#domains tr", has_text="www.shop.example.org")
    await expect(row).to_contain_text("www.shop.example.org CNAME shop.localhost.")
    status, domains = await world.api("GET", "/apps/shop/domains")
    assert status == 200
    assert isinstance(domains, list)
    assert "www.shop.example.org" in {d["hostname"] for d in domains}
    # A bad name is the API's 422, shown as a page.
    await page.get_by_label("Domain", exact=True).fill("not a domain")
    await page.get_by_role("button", name="Add domain").click()
    await expect(page.locator("p.error")).to_contain_text("invalid")
    await page.goto(world.dashboard + "/apps/shop#domains")
    await row.get_by_role("button", name="Remove").click()
    await expect(page.locator(".flash")).to_contain_text("Removed www.shop.example.org")
    await expect(page.locator("#domains")).not_to_contain_text("CNAME")


async def test_an_addon_is_created_with_a_plan_its_credentials_shown_on_request_then_destroyed(
    world: World, page: Page
) -> None:
    await world.api("POST", "/apps", {"name": "shop"})
    await world.sign_in(page)
    await page.goto(world.dashboard + "/apps/shop#addons")
    await page.get_by_label("Plan").select_option("redis:dedicated")
    await page.get_by_label("Attach as").fill("CACHE")
    await page.get_by_role("button", name="Create add-on").click()
    await expect(page.locator(".flash")).to_contain_text("Created")
    addon = page.locator("#addons tbody tr").first
    await expect(addon).to_contain_text("CACHE_URL")
    # The URL is not on the app page; it is on its own page, when asked for.
    assert "redis://" not in await page.locator("#addons").inner_text()
    await addon.get_by_role("link", name="Credentials").click()
    await expect(page.locator("pre.secret-shown")).to_contain_text("redis://")
    await screenshot(page, "addon-credentials")
    await page.go_back()
    await addon.locator("summary").click()
    await addon.get_by_role("button", name="Destroy").click()
    await expect(page.locator(".flash")).to_contain_text("Destroyed")
    status, addons = await world.api("GET", "/apps/shop/addons")
    assert (status, addons) == (200, [])


async def test_formation_never_sleep_and_restart(world: World, page: Page, tmp_path: Path) -> None:
    await world.api("POST", "/apps", {"name": "hello"})
    await deploy(world, tmp_path)
    await world.sign_in(page)
    await page.goto(world.dashboard + "/apps/hello#formation")
    await page.get_by_label("Never sleep").check()
    await page.get_by_role("button", name="Scale").click()
    await expect(page.locator(".flash")).to_contain_text("Formation of web updated")
    # Never sleeping, the app wakes without a request.
    await expect(page.locator("#app-state")).to_have_attribute("data-state", "up")
    status, formation = await world.api("GET", "/apps/hello/formation")
    assert status == 200
    assert isinstance(formation, list)
    assert formation[0]["never_sleep"] is True
    await page.get_by_role("button", name="Restart all").click()
    await expect(page.locator(".flash")).to_contain_text("Restarting")
    await expect(page.locator("#activity")).to_contain_text("dyno.restart")
    await expect(page.locator("#activity")).to_contain_text("by user:admin")


async def test_an_admin_adds_a_collaborator_who_then_sees_their_app(
    world: World, page: Page
) -> None:
    for name in ("team-a", "team-b"):
        await world.api("POST", "/apps", {"name": name})
    await world.sign_in(page)
    await page.get_by_role("link", name="Users").click()
    await page.get_by_label("Name").fill("collab")
    await page.get_by_label("Password").fill("collab-password-1")
    await page.get_by_label("Apps (collaborator; comma-separated)").fill("team-a")
    await page.get_by_role("button", name="Add user").click()
    await expect(page.locator(".flash")).to_contain_text("Added collab")
    await expect(page.get_by_label("Apps of collab")).to_have_value("team-a")
    await screenshot(page, "users")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(world.dashboard + "/login")
    await world.sign_in(page, "collab", "collab-password-1")
    await expect(page.locator("#apps tbody tr")).to_have_count(1)


async def test_the_list_filters_as_one_types_and_works_by_keyboard(
    world: World, page: Page
) -> None:
    for name in ("alpha", "beta", "gamma"):
        await world.api("POST", "/apps", {"name": name})
    await world.sign_in(page)
    rows = page.locator("#apps tbody tr")
    await page.get_by_label("Filter").fill("ta")  # beta
    await expect(rows.locator("visible=true")).to_have_count(1)
    await expect(page.locator("#app-count")).to_have_text("1")
    # Without the script, the same filter is the form's GET.
    await page.goto(world.dashboard + "/?q=alp")
    await expect(rows).to_have_count(1)
    # Keyboard: tab to the first app's link and open it with Enter.
    await page.goto(world.dashboard + "/")
    for _ in range(20):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement.textContent")
        if focused == "alpha":
            break
    else:
        raise AssertionError("the first app's link is not reachable by Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_url(world.dashboard + "/apps/alpha")


async def test_an_admin_changes_a_collaborators_apps_then_removes_them(
    world: World, page: Page, browser: Browser
) -> None:
    for name in ("team-a", "team-b"):
        await world.api("POST", "/apps", {"name": name})
    users = world.control.dashboard.users
    await users.create_user("collab", "collab-password-1", admin=False, apps_=["team-a"], actor="t")
    status, body = await world.api(
        "POST", "/dashboard/token", {"user": "collab", "password": "collab-password-1"}
    )
    assert status == 201
    assert isinstance(body, dict)
    token = body["token"]
    collab = await browser.new_context()
    try:
        their_page = await collab.new_page()
        await world.sign_in(their_page, "collab", "collab-password-1")
        await world.sign_in(page)
        await page.goto(world.dashboard + "/users")
        row = page.locator('tr[data-user="collab"]')
        await row.get_by_label("Apps of collab").fill("team-b")
        await row.get_by_role("button", name="Set apps").click()
        await expect(page.locator(".flash")).to_contain_text("Apps of collab set")
        # At once, for their session and their token.
        await their_page.goto(world.dashboard + "/")
        await expect(their_page.locator("#apps tbody tr")).to_have_attribute("data-app", "team-b")
        assert (await world.api("GET", "/apps/team-a/config-vars", token=token))[0] == 403
        assert (await world.api("GET", "/apps/team-b/config-vars", token=token))[0] == 200
        # Removed: their session ends and their token stops working.
        await row.get_by_role("button", name="Remove collab").click()
        await expect(page.locator(".flash")).to_contain_text("Removed collab")
        await their_page.goto(world.dashboard + "/")
        await expect(their_page).to_have_url(re.compile(r".*/dashboard/login.*"))
        assert (await world.api("GET", "/apps/team-b/config-vars", token=token))[0] == 401
        # An admin cannot remove themselves (no button, and the request is refused).
        await expect(page.locator('tr[data-user="admin"] button')).to_have_count(0)
    finally:
        await collab.close()


async def test_config_vars_are_edited_removed_and_pasted_with_a_diff_each_time(
    world: World, page: Page
) -> None:
    await world.api("POST", "/apps", {"name": "shop"})
    await world.api("PATCH", "/apps/shop/config-vars", {"MODE": "slow", "OLD": "1"})
    await world.sign_in(page)
    await page.goto(world.dashboard + "/apps/shop#config")
    # The value is masked until revealed.
    value = page.get_by_label("Value of MODE")
    await expect(value).to_have_attribute("type", "password")
    await page.locator("#config tr", has_text="MODE").get_by_role("button", name="Reveal").click()
    await expect(value).to_have_attribute("type", "text")
    await value.fill("fast")
    await page.locator("#config tr", has_text="MODE").get_by_role("button", name="Save…").click()
    await expect(page.locator("table.diff tr.changed")).to_contain_text("MODE")
    await page.get_by_role("button", name="Release these changes").click()
    await expect(page.locator(".flash")).to_contain_text("Config changed")
    await page.locator("#config tr", has_text="OLD").get_by_role("button", name="Remove…").click()
    await expect(page.locator("table.diff tr.removed")).to_contain_text("OLD")
    await page.get_by_role("button", name="Release these changes").click()
    await expect(page.locator(".flash")).to_contain_text("Config changed")
    await page.get_by_label("Paste a .env block").fill("# from .env\nA=1\nexport B='two words'\n")
    await page.get_by_role("button", name="Review changes…").click()
    await expect(page.locator("table.diff tr.added")).to_have_count(2)
    await page.get_by_role("button", name="Release these changes").click()
    await expect(page.locator(".flash")).to_contain_text("Config changed")
    status, config = await world.api("GET", "/apps/shop/config-vars")
    assert status == 200
    assert config == {"MODE": "fast", "A": "1", "B": "two words"}
