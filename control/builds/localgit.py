"""A repository on this machine, read in place for a confined build (``slipway up``).

The sandbox (kit/spawn.py) sees no host path, and under a uid per app could
not read the owner's files, so git cannot fetch a local repository from
inside it. This reads it from outside, as slipway's own user, and is used for
an admin's source only (``check_git_source`` refuses a tenant's path); never
in the app's cache (``cache/<app>/repo.git``), which the app's own build steps
can write: a hook planted there would run as slipway. git itself refuses a
repository owned by another user (its safe.directory check), so another
app's files stay out of reach even of an admin's typo.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from pathlib import Path

from control.builds import slug as slug_files
from control.builds.errors import BuildFailed, SourceError
from control.builds.process import run_step
from kit.redact import mask_text


async def export_local(
    repo: str, commit: str, git: str, env: dict[str, str], work: Path, src: Path, tail: deque[str]
) -> str:
    """``commit``'s files of ``repo`` unpacked into ``src`` (``work``: a scratch directory);
    its full sha. ``tail`` gets what git said, for a failure's or a timeout's report."""
    # No global config (HOME is the builds' root): nothing there may widen
    # safe.directory nor add filters for a process that runs unconfined.
    env = {**env, "GIT_CONFIG_GLOBAL": os.devnull}
    found: deque[str] = deque(maxlen=8)
    try:
        await run_step(
            [git, "-C", repo, "rev-parse", "--verify", "--end-of-options", f"{commit}^{{commit}}"],
            cwd=work,
            env=env,
            on_line=tail.append,
            tail=found,
            what="git rev-parse",
        )
    except BuildFailed as exc:
        said = " / ".join(line.strip() for line in exc.tail if line.strip())
        raise SourceError(f"cannot fetch commit {commit} from {repo}: {mask_text(said)}") from exc
    sha = found[-1].strip()
    archive = work / "source.tar"
    await run_step(
        [git, "-C", repo, "archive", "--format=tar", "-o", str(archive), sha],
        cwd=work,
        env=env,
        on_line=_quiet,  # git archive -o prints nothing but its errors, which tail keeps
        tail=tail,
        what="git archive",
    )
    await asyncio.to_thread(slug_files.unpack, archive, src)
    archive.unlink()
    return sha


def _quiet(_: str) -> None:
    pass
