"""Reading app.json at a commit, with git, so a review app is configured as its branch says."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from control.builds.errors import SourceError
from control.builds.sources import ADMIN_PROTOCOLS, classify
from control.review.errors import ReviewError
from kit import command
from kit.redact import mask_text

_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
# Seconds for fetching one commit's tree; a webhook handler must answer GitHub within 10 s.
FETCH_TIMEOUT = 8.0


class AppJsonReader(Protocol):
    async def read(self, git_url: str, commit: str) -> str | None:
        """app.json's text at ``commit``, or None when the repository has none."""
        ...


class GitAppJson:
    """Fetches just the commit (shallow, no blobs but app.json) and reads app.json from it."""

    def __init__(self, *, git: str = "git", timeout: float = FETCH_TIMEOUT) -> None:
        self._git = git
        self._timeout = timeout

    async def read(self, git_url: str, commit: str) -> str | None:
        if not _COMMIT.match(commit):
            raise ReviewError(f"commit {commit!r} is not a hexadecimal sha")
        try:
            classify(git_url)  # never an option nor a remote helper, whoever sent it
        except SourceError as exc:
            raise ReviewError(str(exc)) from None
        with tempfile.TemporaryDirectory(prefix="slipway-appjson-") as tmp:
            repo = Path(tmp)
            await self._run(None, "init", "--quiet", "--bare", str(repo))
            # "--": the URL is never taken for an option, whatever it says.
            await self._run(repo, "fetch", "--quiet", "--depth", "1", "--", git_url, commit)
            code, out = await self._git_out(repo, "show", f"{commit}:app.json")
            if code != 0:
                return None
            return out

    async def _run(self, repo: Path | None, *args: str) -> None:
        code, out = await self._git_out(repo, *args)
        if code != 0:
            raise ReviewError(f"git {args[0]} failed: {mask_text(out.strip())[-300:]}")

    async def _git_out(self, repo: Path | None, *args: str) -> tuple[int, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_TERMINAL_PROMPT": "0",
            # Transports that only fetch: never ext:: (runs a command) nor fd::.
            "GIT_ALLOW_PROTOCOL": ADMIN_PROTOCOLS,
        }
        argv = [self._git, *([f"--git-dir={repo}"] if repo is not None else []), *args]
        try:
            code, out = await command.output(argv, timeout=self._timeout, env=env)
        except TimeoutError as exc:
            raise ReviewError(f"git {args[0]} took over {self._timeout:g}s") from exc
        return code, out.decode("utf-8", "replace")
