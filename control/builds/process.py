"""One build step: a subprocess in its own process group, its output streamed by line.

The group matters: pip and npm start children of their own (build backends,
lifecycle scripts), and a timeout that killed only the direct child would
leave them running and writing into a directory that is being deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from control.builds.errors import BuildFailed

#: Receives each line of output, without its newline.
LineSink = Callable[[str], None]

# Bytes a single output line may take before it is cut; pip's progress bars
# and minified npm errors can be one enormous line.
_LINE_LIMIT = 64 * 1024


async def run_step(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    on_line: LineSink,
    tail: deque[str],
    what: str,
) -> None:
    """Run ``argv``; every output line goes to ``on_line`` and ``tail``.

    Raises BuildFailed (with ``tail``) on a non-zero exit. Cancelling the
    caller (a timeout) kills the whole process group before returning.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            limit=_LINE_LIMIT,
        )
    except OSError as exc:
        raise BuildFailed(f"{what}: cannot start {argv[0]!r}: {exc.strerror}") from exc
    try:
        assert proc.stdout is not None
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:
                # Over the line limit: take what is buffered as one (cut) line.
                raw = await proc.stdout.read(_LINE_LIMIT)
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line)
            on_line(line)
        code = await proc.wait()
    except BaseException:
        _kill_group(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if code != 0:
        raise BuildFailed(f"{what} failed (exit status {code})", tail=tuple(tail))


def _kill_group(pid: int) -> None:
    # start_new_session made the child its group's leader, so its pid is the pgid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
