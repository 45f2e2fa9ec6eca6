"""Kill one background task of a real ``slipway`` process: the seam of the supervision tests.

``slipway_with_fault(target, *args)`` runs ``slipway ARGS`` as its own process, in
which ``target`` (``"module:Class.method"``) has been replaced by one raising an
error nobody expects, as a bug would; the task that calls it dies, and the test
sees what the process does about it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

#: Start-up (imports, migrations) on a machine shared by several engineers, plus the death.
EXIT_TIMEOUT = 60.0

_PRELUDE = textwrap.dedent(
    """
    import importlib, inspect, sys

    module, _, attribute = {target!r}.partition(":")
    *path, name = attribute.split(".")
    owner = importlib.import_module(module)
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    message = "injected fault: " + {target!r}

    if inspect.iscoroutinefunction(original):
        async def broken(*args, **kwargs):
            raise RuntimeError(message)
    else:
        def broken(*args, **kwargs):
            raise RuntimeError(message)

    setattr(owner, name, broken)
    from control.cli import main
    main(sys.argv[1:], prog_name="slipway")
    """
)


@dataclass(frozen=True)
class Exited:
    code: int
    stderr: str

    def names(self, task: str) -> bool:
        """Whether the log has the line naming ``task`` as the one that failed."""
        line = f'msg="background task failed" task={re.escape(task)} '
        return re.search(line + r'.*error="RuntimeError: injected fault', self.stderr) is not None


async def slipway_with_fault(
    target: str,
    *args: str,
    env: Mapping[str, str | None] | None = None,
    started: str | None = None,
    timeout: float = EXIT_TIMEOUT,
) -> Exited:
    """Run ``slipway ARGS`` with ``target`` raising; wait (bounded) for the process to exit.

    ``env`` adds to this process's environment (None: removes the variable); ``started``:
    a log message that must come before the failure (the process got going: a death in
    start-up would prove little about supervision).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PRELUDE.format(target=target),
        *args,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            assert proc.stderr is not None
            err = (await proc.stderr.read()).decode()
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if started is not None:
        assert f'msg="{started}"' in err.split('msg="background task failed"')[0], err
    return Exited(code, err)
