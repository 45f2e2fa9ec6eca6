"""Which commit a branch is at in a source repository (``git ls-remote``), asked the way a
build's fetch is: ``--`` before the URL, no prompt, and only the transports the source's
namer may use (``GIT_ALLOW_PROTOCOL``), plus whatever the caller's checks pinned
(``Destination.git_config`` for a tenant's URL)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from control.builds.errors import SourceError
from control.builds.sources import ADMIN_PROTOCOLS, check_branch
from control.errors import Unprocessable
from kit import command
from kit.redact import mask_text, mask_url

#: Seconds for asking the repository for its branch's head (a user waits on the form).
LS_REMOTE_TIMEOUT = 15.0


async def branch_head(
    repo_url: str,
    branch: str,
    *,
    allow: str = ADMIN_PROTOCOLS,
    env: Mapping[str, str] | None = None,
    git: str = "git",
) -> str:
    """The commit ``branch`` is at in ``repo_url``; Unprocessable (422) when it is not there
    or the repository cannot be read. ``branch`` must be a branch name (``check_branch``)."""
    try:
        check_branch(branch)
    except SourceError as exc:
        raise Unprocessable(str(exc), id="invalid_ref") from None
    shown = mask_url(repo_url)
    run_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_TERMINAL_PROMPT": "0",
        **(env or {}),
        "GIT_ALLOW_PROTOCOL": allow,
    }
    try:
        code, out = await command.output(
            [git, "ls-remote", "--", repo_url, f"refs/heads/{branch}"],
            timeout=LS_REMOTE_TIMEOUT,
            env=run_env,
        )
    except TimeoutError:
        raise Unprocessable(
            f"{shown} did not answer within {LS_REMOTE_TIMEOUT:g}s: check the URL and "
            "that this control plane can reach it",
            id="unreachable",
        ) from None
    text = out.decode("utf-8", "replace")
    if code != 0:
        raise Unprocessable(
            f"cannot read {shown}: {mask_text(text.strip())[-300:]}; check the URL and "
            "that this control plane may read the repository",
            id="unreachable",
        )
    for line in text.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    raise Unprocessable(f"{shown} has no branch {branch!r}", id="no_such_branch")
