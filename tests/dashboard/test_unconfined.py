"""Where apps run unconfined, app tokens are refused (docs/security.md); a collaborator's
session is refused the same way, while an admin's works."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import BaseTestServer, TestServer

from control.dashboard.app import Dashboard, build_dashboard
from control.dashboard.users import Users
from control.service import Control
from control.store.db import Store
from tests.control.targets import RecordingTarget

PASSWORD = "a-long-enough-password"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[BaseTestServer]:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
    control = Control(
        store=store, target=RecordingTarget(), app_tokens_refused="bubblewrap is missing"
    )
    await control.start(resume=False)
    users = Users(store=store)
    await control.create_app("team-a", actor="test")
    await users.create_user("root", PASSWORD, admin=True, actor="test")
    await users.create_user("collab", PASSWORD, admin=False, apps_=["team-a"], actor="test")
    app = aiohttp.web.Application()
    app.add_subapp("/dashboard", build_dashboard(Dashboard(control=control, users=users)))
    async with TestServer(app, host="127.0.0.1") as running:
        yield running
    await store.close()


async def sign_in(session: aiohttp.ClientSession, base: str, user: str) -> int:
    async with session.get(f"{base}/dashboard/login") as reply:
        match = re.search(r'name="csrf" value="([^"]+)"', await reply.text())
        assert match is not None
    form = {"user": user, "password": PASSWORD, "csrf": match.group(1)}
    async with session.post(f"{base}/dashboard/login", data=form) as reply:
        return reply.status


@pytest.mark.parametrize(("user", "status"), [("root", 200), ("collab", 403)])
async def test_a_collaborator_is_refused_where_apps_run_unconfined(
    server: BaseTestServer, user: str, status: int
) -> None:
    base = str(server.make_url("")).rstrip("/")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        assert await sign_in(session, base, user) == status
        async with session.get(f"{base}/dashboard/apps/team-a") as reply:
            assert reply.status == status
            if status == 403:
                assert "bubblewrap" in await reply.text()
