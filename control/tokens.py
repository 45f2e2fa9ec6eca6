"""Tokens: minting, revoking, and checking the one a request carries (with a short cache).

Every request checks its token, and a lookup is a transaction: a verified
token is trusted for TOKEN_CACHE_TTL. Revocations, renames and deletions in
this process clear the cache at once; another replica's take effect within
the TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from control import auth
from control.errors import Unauthorized
from control.models import Token
from control.store.db import Store

#: Seconds a verified token is trusted without asking the store again: the delay
#: before another replica sees a revocation, and the most an app token can lag a rename.
TOKEN_CACHE_TTL = 1.0
#: Cached tokens before the cache starts over (a bound, not a tuning knob).
TOKEN_CACHE_MAX = 10_000


class Tokens:
    def __init__(
        self,
        *,
        store: Store,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        app_tokens_refused: str | None = None,
    ) -> None:
        """``app_tokens_refused``: why app tokens are refused (their apps would run
        unconfined, kit/spawn.py), or None; the admin token works either way."""
        self.store = store
        self._app_tokens_refused = app_tokens_refused
        self._clock = clock
        self._monotonic = monotonic
        #: digest -> (principal, until).
        self._principals: dict[str, tuple[auth.Principal, float]] = {}

    @property
    def app_tokens_refused(self) -> str | None:
        """Why tokens short of admin are refused here (apps run unconfined), or None."""
        return self._app_tokens_refused

    def forget_all(self) -> None:
        """Ask the store again for every token: one was revoked, or its app renamed or deleted."""
        self._principals.clear()

    async def authenticate(self, secret: str) -> auth.Principal:
        digest = auth.digest(secret)
        now = self._monotonic()
        cached = self._principals.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        async with self.store.tx(write=False) as tx:
            token = await tx.find_token(digest)
        if token is None:
            raise Unauthorized("the token is not valid", id="unauthorized")
        if len(self._principals) >= TOKEN_CACHE_MAX:
            self.forget_all()
        principal = auth.Principal(token)
        principal.refuse_unconfined(self._app_tokens_refused)  # before the cache: never in it
        self._principals[digest] = (principal, now + TOKEN_CACHE_TTL)
        return principal

    async def create_token(
        self, *, name: str, admin: bool, app: str | None, actor: str, user_id: int | None = None
    ) -> tuple[Token, str]:
        """A token (``admin``, for ``app``, or for a dashboard user: their apps), and its
        secret, shown this once."""
        secret = auth.new_token()
        now = self._clock()
        async with self.store.tx() as tx:
            scope = None if app is None else await tx.get_app(app)
            token = await tx.add_token(
                name=name,
                digest=auth.digest(secret),
                admin=admin,
                app=scope,
                now=now,
                user_id=user_id,
            )
            await tx.record(
                actor=actor,
                action="token.create",
                app=app,
                detail={"token": token.id, "name": name, "admin": admin},
                now=now,
            )
        return token, secret

    async def delete_token(self, token_id: str, *, actor: str) -> None:
        async with self.store.tx() as tx:
            await tx.delete_token(token_id)
            await tx.record(
                actor=actor,
                action="token.delete",
                app=None,
                detail={"token": token_id},
                now=self._clock(),
            )
        self.forget_all()
