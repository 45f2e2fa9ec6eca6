"""Reading app.json at a commit, with git, so a review app is configured as its branch says."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from control.review.errors import ReviewError

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
        with tempfile.TemporaryDirectory(prefix="slipway-appjson-") as tmp:
            repo = Path(tmp)
            await self._run(None, "init", "--quiet", "--bare", str(repo))
            await self._run(repo, "fetch", "--quiet", "--depth", "1", git_url, commit)
            code, out = await self._git_out(repo, "show", f"{commit}:app.json")
            if code != 0:
                return None
            return out

    async def _run(self, repo: Path | None, *args: str) -> None:
        code, out = await self._git_out(repo, *args)
        if code != 0:
            raise ReviewError(f"git {args[0]} failed: {out.strip()[-300:]}")

    async def _git_out(self, repo: Path | None, *args: str) -> tuple[int, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0"}
        proc = await asyncio.create_subprocess_exec(
            self._git,
            *([f"--git-dir={repo}"] if repo is not None else []),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        try:
            async with asyncio.timeout(self._timeout):
                out, _ = await proc.communicate()
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise ReviewError(f"git {args[0]} took over {self._timeout:g}s") from exc
        assert proc.returncode is not None
        return proc.returncode, out.decode("utf-8", "replace")
