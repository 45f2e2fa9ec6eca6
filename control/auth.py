"""Bearer tokens: minted once, stored as a hash, scoped to everything or to one app.

A token is 32 random bytes (256 bits), so its sha256 is a safe thing to store:
there is no password to guess, a stolen hash cannot be turned back into a
token, and a lookup is one indexed equality instead of a slow KDF per request
(which a password would need, and a random token does not).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from control.errors import Forbidden
from control.models import Token

#: Makes a leaked token easy to recognise in a secret scanner.
PREFIX = "slw_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the token that authenticated the request."""

    token: Token

    @property
    def actor(self) -> str:
        """How the audit log names them: a dashboard user by name, else the token's."""
        if self.token.user is not None:
            return f"user:{self.token.user}"
        return f"token:{self.token.name}"

    def may_act_on(self, app: str) -> bool:
        return self.token.admin or self.token.app == app or app in self.token.apps

    @property
    def only_apps(self) -> frozenset[str] | None:
        """The apps this principal may see, or None for all of them (an admin)."""
        if self.token.admin:
            return None
        return self.token.apps | ({self.token.app} if self.token.app else set())

    def require_app(self, app: str) -> None:
        if not self.may_act_on(app):
            raise Forbidden(f"this token may not act on app {app!r}", id="forbidden")

    def refuse_unconfined(self, reason: str | None) -> None:
        """An app token is only as safe as its app's confinement: none, no app token."""
        if reason is not None and not self.token.admin:
            raise Forbidden(
                f"app tokens are refused here: {reason}; an operator can act with the "
                "admin token, or install bubblewrap and restart slipway",
                id="app_tokens_refused",
            )

    def require_admin(self) -> None:
        if not self.token.admin:
            raise Forbidden("this needs an admin token", id="forbidden")
