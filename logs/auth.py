"""Who may read which app's logs: the ``TokenVerifier`` seam and its implementations.

``StaticTokens``: an admin token from settings and per-app tokens from a
file. ``ControlPlaneTokens``: the control plane's API tokens, checked by
forwarding the client's token to its ``GET /auth/verify?app=APP`` (the
contract in docs/control.md), so the logs service never sees the token
table. ``AnyOf`` tries several in order.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import aiohttp

from logs.errors import VerifierError

#: Seconds a "yes" from the control plane is trusted: a revoked token reads at most this long.
VERIFY_TTL = 5.0


class TokenVerifier(Protocol):
    async def allows(self, token: str, *, app: str) -> bool:
        """True when ``token`` may read ``app``'s logs."""


class StaticTokens:
    def __init__(self, *, admin: str | None = None, apps: Mapping[str, str] | None = None) -> None:
        self._admin = admin
        self._apps = dict(apps or {})

    async def allows(self, token: str, *, app: str) -> bool:
        if not token:
            return False
        if self._admin and hmac.compare_digest(token.encode(), self._admin.encode()):
            return True
        expected = self._apps.get(app)
        return expected is not None and hmac.compare_digest(token.encode(), expected.encode())


class ControlPlaneTokens:
    """Asks the control plane whether a token may read an app's logs."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = VERIFY_TTL,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self._ttl = ttl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        #: (sha256 of the token, app) -> trusted until; never the token itself.
        self._allowed: dict[tuple[str, str], float] = {}
        self._session: aiohttp.ClientSession | None = None

    async def allows(self, token: str, *, app: str) -> bool:
        if not token:
            return False
        key = (hashlib.sha256(token.encode()).hexdigest(), app)
        now = self._clock()
        if self._allowed.get(key, 0.0) > now:
            return True
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(
                f"{self.url}/auth/verify",
                params={"app": app},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise VerifierError(f"cannot reach the control plane at {self.url}: {exc!r}") from exc
        if status == 200:
            if len(self._allowed) > 10_000:  # bounded: drop what has expired
                self._allowed = {k: t for k, t in self._allowed.items() if t > now}
            self._allowed[key] = now + self._ttl
            return True
        if status in (401, 403, 404, 422):
            return False
        raise VerifierError(f"the control plane answered {status} to /auth/verify")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class AnyOf:
    """Allowed if any verifier allows, asked in order (static tokens first: no I/O)."""

    def __init__(self, *verifiers: TokenVerifier) -> None:
        self._verifiers = verifiers

    async def allows(self, token: str, *, app: str) -> bool:
        for verifier in self._verifiers:
            if await verifier.allows(token, app=app):
                return True
        return False


def read_tokens_file(path: Path) -> dict[str, str]:
    """``app token`` per line; ``#`` comments and blank lines allowed."""
    out: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'app token'")
        out[parts[0]] = parts[1]
    return out


def parse_tokens_env(text: str) -> dict[str, str]:
    """``SLIPWAY_LOGS_APP_TOKENS``: ``app=token,app2=token2``."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        app, sep, token = item.partition("=")
        if not sep or not app or not token:
            raise ValueError("SLIPWAY_LOGS_APP_TOKENS: expected app=token[,app=token...]")
        out[app] = token
    return out
