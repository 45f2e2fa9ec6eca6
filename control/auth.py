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
        """How the audit log names them."""
        return f"token:{self.token.name}"

    def may_act_on(self, app: str) -> bool:
        return self.token.admin or self.token.app == app

    def require_app(self, app: str) -> None:
        if not self.may_act_on(app):
            raise Forbidden(f"this token may not act on app {app!r}", id="forbidden")

    def require_admin(self) -> None:
        if not self.token.admin:
            raise Forbidden("this needs an admin token", id="forbidden")
