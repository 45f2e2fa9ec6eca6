"""One short-lived command's output, with the child always reaped.

``asyncio``'s ``communicate()`` leaves its child running when the awaiting task is
cancelled or times out: the process outlives its caller, and its pipes are closed by the
garbage collector after the loop is gone (a ``ResourceWarning`` at a random later moment).
:func:`output` kills and waits for the child on every way out, cancellation included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence


async def output(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stderr: bool = True,
) -> tuple[int, bytes]:
    """Run ``argv`` with stdin closed: (exit code, output). Stderr is folded into the
    output, or dropped with ``stderr=False``.

    Raises ``TimeoutError`` after ``timeout`` seconds and ``OSError`` when it cannot start;
    in both cases, and on cancellation, no child is left behind.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if stderr else asyncio.subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        # Reaped even while being cancelled: the wait is quick once the child is killed.
        await asyncio.shield(_reap(proc))
        raise
    assert proc.returncode is not None
    return proc.returncode, out


async def _reap(proc: asyncio.subprocess.Process) -> None:
    await proc.wait()
    if proc.stdout is not None:
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
