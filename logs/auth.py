"""Who may read which app's logs: the ``TokenVerifier`` seam and a static implementation.

The control plane implements ``TokenVerifier`` with hashed API tokens later;
until then an admin token comes from settings and per-app tokens from a file.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol


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
