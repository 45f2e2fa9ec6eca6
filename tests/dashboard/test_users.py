"""Users, passwords, sessions and user tokens in the state store, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from control.dashboard.users import SESSION_TTL, Users
from control.errors import BadRequest, Conflict, Unprocessable
from control.service import Control
from control.store.db import Store
from control.store.schema import users as users_table
from tests.control.targets import RecordingTarget

PASSWORD = "correct horse battery"


@pytest.fixture
async def control(db_url: str) -> AsyncIterator[Control]:
    store = Store.open(db_url)
    control = Control(store=store, target=RecordingTarget())
    await control.start(resume=False)
    try:
        yield control
    finally:
        await store.close()


class TestPasswords:
    async def test_only_the_right_password_of_a_known_user_signs_in(self, control: Control) -> None:
        users = Users(store=control.store)
        await users.create_user("ada", PASSWORD, admin=True, actor="test")
        assert (await users.verify("ada", PASSWORD)) is not None
        assert await users.verify("ada", PASSWORD + "!") is None
        assert await users.verify("nobody", PASSWORD) is None
        async with control.store.tx(write=False) as tx:
            stored = (await tx.conn.execute(sa.select(users_table.c.password_hash))).scalar()
        assert isinstance(stored, str)
        assert stored.startswith("$argon2id$")
        assert PASSWORD not in stored

    async def test_weak_duplicate_and_badly_named_users_are_refused(self, control: Control) -> None:
        users = Users(store=control.store)
        with pytest.raises(BadRequest, match="at least 12"):
            await users.create_user("ada", "short", admin=True, actor="test")
        await users.create_user("ada", PASSWORD, admin=True, actor="test")
        with pytest.raises(Conflict):
            await users.create_user("ada", PASSWORD, admin=False, actor="test")
        with pytest.raises(Unprocessable):
            await users.create_user("Not A Name", PASSWORD, admin=False, actor="test")

    async def test_a_hash_made_with_older_parameters_is_upgraded_at_sign_in(
        self, control: Control
    ) -> None:
        users = Users(store=control.store)
        await users.create_user("ada", PASSWORD, admin=True, actor="test")
        weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
        async with control.store.tx() as tx:
            await tx.conn.execute(users_table.update().values(password_hash=weak))
        assert await users.verify("ada", PASSWORD) is not None
        async with control.store.tx(write=False) as tx:
            stored = (await tx.conn.execute(sa.select(users_table.c.password_hash))).scalar()
        assert stored != weak
        assert not PasswordHasher().check_needs_rehash(str(stored))
        assert await users.verify("ada", PASSWORD) is not None

    async def test_the_first_admin_is_made_once(self, control: Control) -> None:
        users = Users(store=control.store)
        password = await users.ensure_first_admin()
        assert password is not None
        assert len(password) >= 20
        assert await users.ensure_first_admin() is None
        admin = await users.verify("admin", password)
        assert admin is not None
        assert admin.admin


class TestSessions:
    async def test_a_session_lasts_its_ttl_and_ends_at_sign_out(self, control: Control) -> None:
        now = [1000.0]
        users = Users(store=control.store, clock=lambda: now[0])
        user = await users.create_user("ada", PASSWORD, admin=True, actor="test")
        session_id, session = await users.start_session(user)
        found = await users.find_session(session_id)
        assert found is not None
        assert found.user.name == "ada"
        assert found.csrf == session.csrf
        now[0] += SESSION_TTL + 1
        assert await users.find_session(session_id) is None
        now[0] = 1000.0
        await users.end_session(session_id)
        assert await users.find_session(session_id) is None

    async def test_signing_in_ends_the_sessions_the_browser_came_with(
        self, control: Control
    ) -> None:
        users = Users(store=control.store)
        user = await users.create_user("ada", PASSWORD, admin=True, actor="test")
        first, _ = await users.start_session(user)
        second, _ = await users.start_session(user, replaces=[first])
        assert second != first
        assert await users.find_session(first) is None
        assert await users.find_session(second) is not None


class TestCollaborators:
    async def test_a_user_token_reaches_the_users_apps_and_no_other(self, control: Control) -> None:
        for name in ("team-a", "team-b"):
            await control.create_app(name, actor="test")
        users = Users(store=control.store)
        user = await users.create_user(
            "collab", PASSWORD, admin=False, apps_=["team-a"], actor="test"
        )
        _, secret = await control.tokens.create_token(
            name="login:collab", admin=False, app=None, actor="test", user_id=user.id
        )
        principal = await control.authenticate(secret)
        assert principal.actor == "user:collab"
        assert principal.may_act_on("team-a")
        assert not principal.may_act_on("team-b")
        assert principal.only_apps == frozenset({"team-a"})
        listed = await control.list_apps(after=None, limit=10, among=principal.only_apps)
        assert [a.name for a in listed] == ["team-a"]
        # The session's principal is the same check.
        session_principal = user.principal()
        assert session_principal.may_act_on("team-a")
        assert not session_principal.may_act_on("team-b")
        # A deleted app takes its memberships with it.
        await control.delete_app("team-a", actor="test")
        control.tokens.forget_all()
        assert (await control.authenticate(secret)).only_apps == frozenset()
        assert (await users.get_user("collab")).apps == frozenset()
