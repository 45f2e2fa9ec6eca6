"""Commit statuses back to GitHub: what a delivery's plan came to, shown on the pull request.

``POST {api}/repos/{owner}/{repo}/statuses/{sha}`` with a token that may
write statuses (a fine-grained token with "Commit statuses: write"). A
status that cannot be posted is logged and dropped: the app's recorded
status and its log stream still say what happened.
"""

from __future__ import annotations

import enum
import logging
from typing import Protocol
from urllib.parse import quote

import aiohttp

log = logging.getLogger(__name__)

#: Characters GitHub keeps of a status description.
DESCRIPTION_LIMIT = 140
#: Seconds for one status post: it runs after the plan, nothing waits on it but the next plan.
POST_TIMEOUT = 10.0


class CommitState(enum.StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


class CommitStatuses(Protocol):
    async def post(
        self, repository: str, sha: str, state: CommitState, description: str, *, context: str
    ) -> None: ...

    async def close(self) -> None: ...


class NoStatuses:
    """No token configured: nothing is sent to GitHub."""

    async def post(
        self, repository: str, sha: str, state: CommitState, description: str, *, context: str
    ) -> None:
        pass

    async def close(self) -> None:
        pass


class GitHubStatuses:
    def __init__(self, token: str, *, api_url: str = "https://api.github.com") -> None:
        self._token = token
        self._api = api_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def post(
        self, repository: str, sha: str, state: CommitState, description: str, *, context: str
    ) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT))
        url = f"{self._api}/repos/{quote(repository, safe='/')}/statuses/{quote(sha)}"
        if len(description) > DESCRIPTION_LIMIT:
            description = description[: DESCRIPTION_LIMIT - 1] + "…"
        body = {"state": state.value, "description": description, "context": context}
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        try:
            async with self._session.post(url, json=body, headers=headers) as response:
                if response.status >= 300:
                    log.warning(
                        "github refused the commit status",
                        extra={
                            "repository": repository,
                            "sha": sha,
                            "status": response.status,
                            "reply": (await response.text())[:200],
                        },
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "posting the commit status failed",
                extra={"repository": repository, "sha": sha, "error": str(exc)},
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
