"""Dashboard users: argon2id passwords, memberships, and sessions in the state store.

A user is an admin (everything) or a collaborator on named apps (the
``memberships`` table). Whatever a user does, in a page or with the token
``slipway login --user`` mints, goes through the same ``auth.Principal`` as
a token's: an admin's reaches every app, a collaborator's reaches their apps
(``Token.apps``), one check for both.

Sessions: 256 random bits in the cookie, their sha256 in the store (as for
tokens, a copy of the table signs no one in), each with its own CSRF token.
A new session is made at every sign-in, never taken from the request: an id
planted in a victim's browser before sign-in is never the one signed in
(session fixation).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection

from control import auth
from control.errors import BadRequest, Conflict, NotFound
from control.models import Token
from control.rules import validate_app_name
from control.store.db import Store
from control.store.schema import apps, memberships, sessions, tokens, users

#: Seconds a session lasts from sign-in (a working day and a half); then sign in again.
SESSION_TTL = 12 * 3600.0
#: The first admin's name at `slipway up`.
FIRST_ADMIN = "admin"
#: Shortest password accepted: argon2 slows guessing, it cannot make "1234" safe.
MIN_PASSWORD = 12

_hasher = PasswordHasher()  # argon2id, RFC 9106's second recommended parameters
#: Verified against when the user does not exist, so an unknown name costs as long as a
#: wrong password (no user enumeration by timing).
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    admin: bool
    created_at: float
    #: A collaborator's apps (names); empty for an admin, who has all.
    apps: frozenset[str] = frozenset()

    def principal(self) -> auth.Principal:
        """Who this user is to the control plane: the same check as a token's."""
        token = Token(
            id=f"user-{self.id}",
            name=self.name,
            admin=self.admin,
            app=None,
            created_at=self.created_at,
            user=self.name,
            apps=frozenset() if self.admin else self.apps,
        )
        return auth.Principal(token)


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf: str
    expires_at: float


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"a password needs at least {MIN_PASSWORD} characters", id="weak_password")


class Users:
    def __init__(self, *, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    # -- users ----------------------------------------------------------------------------

    async def create_user(
        self, name: str, password: str, *, admin: bool, apps_: Sequence[str] = (), actor: str
    ) -> User:
        validate_app_name(name)  # the same shape as an app's name: short, lower case, URL-safe
        check_password(password)
        hashed = await asyncio.to_thread(_hasher.hash, password)
        now = self._clock()
        async with self.store.tx() as tx:
            found = await tx.conn.execute(sa.select(users.c.id).where(users.c.name == name))
            if found.first() is not None:
                raise Conflict(f"a user named {name!r} already exists", id="name_taken")
            result = await tx.conn.execute(
                users.insert().values(name=name, password_hash=hashed, admin=admin, created_at=now)
            )
            key = result.inserted_primary_key
            assert key is not None
            user_id = int(key[0])
            for app_name in apps_:
                app = await tx.get_app(app_name)
                await tx.conn.execute(
                    memberships.insert().values(user_id=user_id, app_id=app.id, created_at=now)
                )
            await tx.record(
                actor=actor,
                action="user.create",
                app=None,
                detail={"user": name, "admin": admin, "apps": sorted(apps_)},
                now=now,
            )
        return User(id=user_id, name=name, admin=admin, created_at=now, apps=frozenset(apps_))

    async def list_users(self) -> list[User]:
        async with self.store.tx(write=False) as tx:
            rows = (await tx.conn.execute(users.select().order_by(users.c.name))).all()
            return [await self._user(tx.conn, row) for row in rows]

    async def _user(self, conn: AsyncConnection, row: sa.Row[Any]) -> User:
        member: frozenset[str] = frozenset()
        if not row.admin:
            query = (
                sa.select(apps.c.name)
                .select_from(memberships.join(apps, apps.c.id == memberships.c.app_id))
                .where(memberships.c.user_id == row.id)
            )
            member = frozenset(r.name for r in await conn.execute(query))
        return User(
            id=row.id, name=row.name, admin=row.admin, created_at=row.created_at, apps=member
        )

    async def set_apps(self, name: str, apps_: Sequence[str], *, actor: str) -> User:
        """A collaborator's apps, all at once (an admin has every app: refused)."""
        now = self._clock()
        async with self.store.tx() as tx:
            user = await self._find(tx.conn, name)
            if user.admin:
                raise BadRequest(f"{name} is an admin: every app is theirs", id="admin_user")
            await tx.conn.execute(memberships.delete().where(memberships.c.user_id == user.id))
            for app_name in sorted(set(apps_)):
                app = await tx.get_app(app_name)
                await tx.conn.execute(
                    memberships.insert().values(user_id=user.id, app_id=app.id, created_at=now)
                )
            await tx.record(
                actor=actor,
                action="user.apps",
                app=None,
                detail={"user": name, "apps": sorted(set(apps_))},
                now=now,
            )
        return await self.get_user(name)

    async def delete_user(self, name: str, *, actor: str) -> None:
        """The user, their sessions and their tokens, gone together."""
        async with self.store.tx() as tx:
            user = await self._find(tx.conn, name)
            # Explicit children first: the same on every database, cascade or not.
            for table in (sessions, memberships, tokens):
                await tx.conn.execute(table.delete().where(table.c.user_id == user.id))
            await tx.conn.execute(users.delete().where(users.c.id == user.id))
            await tx.record(
                actor=actor,
                action="user.delete",
                app=None,
                detail={"user": name},
                now=self._clock(),
            )

    async def _find(self, conn: AsyncConnection, name: str) -> User:
        row = (await conn.execute(users.select().where(users.c.name == name))).first()
        if row is None:
            raise NotFound(f"no user {name!r}", id="user_not_found")
        return await self._user(conn, row)

    async def get_user(self, name: str) -> User:
        async with self.store.tx(write=False) as tx:
            return await self._find(tx.conn, name)

    async def any_user(self) -> bool:
        async with self.store.tx(write=False) as tx:
            return (await tx.conn.execute(sa.select(users.c.id).limit(1))).first() is not None

    async def ensure_first_admin(self) -> str | None:
        """An admin named ``admin`` with a random password when there is no user at all;
        the password (shown once by the caller), or None when users exist."""
        if await self.any_user():
            return None
        password = secrets.token_urlsafe(18)
        try:
            await self.create_user(FIRST_ADMIN, password, admin=True, actor="slipway:up")
        except Conflict:  # another replica made it first
            return None
        return password

    async def verify(self, name: str, password: str) -> User | None:
        """The user, if ``password`` is theirs; the hash is upgraded when its parameters aged."""
        async with self.store.tx(write=False) as tx:
            row = (await tx.conn.execute(users.select().where(users.c.name == name))).first()
            user = None if row is None else await self._user(tx.conn, row)
        hashed = _DUMMY if row is None else str(row.password_hash)
        try:
            await asyncio.to_thread(_hasher.verify, hashed, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None:
            return None
        if _hasher.check_needs_rehash(hashed):
            rehashed = await asyncio.to_thread(_hasher.hash, password)
            async with self.store.tx() as tx:
                await tx.conn.execute(
                    users.update().where(users.c.id == user.id).values(password_hash=rehashed)
                )
        return user

    # -- sessions -------------------------------------------------------------------------

    async def start_session(
        self, user: User, *, replaces: Sequence[str] = ()
    ) -> tuple[str, Session]:
        """A new session for ``user`` (a new id, whatever the request carried); ``replaces``,
        the ids the browser had, are ended, so none can be signed in (session fixation)."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self._clock()
        async with self.store.tx() as tx:
            for old in replaces:
                await tx.conn.execute(sessions.delete().where(sessions.c.hash == _digest(old)))
            await tx.conn.execute(sessions.delete().where(sessions.c.expires_at < now))
            await tx.conn.execute(
                sessions.insert().values(
                    hash=_digest(session_id),
                    user_id=user.id,
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + SESSION_TTL,
                )
            )
            await tx.record(
                actor=f"user:{user.name}", action="user.sign_in", app=None, detail={}, now=now
            )
        return session_id, Session(user=user, csrf=csrf, expires_at=now + SESSION_TTL)

    async def find_session(self, session_id: str) -> Session | None:
        async with self.store.tx(write=False) as tx:
            query = (
                sa.select(sessions.c.csrf, sessions.c.expires_at, users)
                .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
                .where(sessions.c.hash == _digest(session_id))
            )
            row = (await tx.conn.execute(query)).first()
            if row is None or row.expires_at <= self._clock():
                return None
            user = await self._user(tx.conn, row)
        return Session(user=user, csrf=row.csrf, expires_at=row.expires_at)

    async def end_session(self, session_id: str) -> None:
        async with self.store.tx() as tx:
            await tx.conn.execute(sessions.delete().where(sessions.c.hash == _digest(session_id)))
