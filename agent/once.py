"""One-off processes of an app's release: the release phase, postdeploy, pr-predestroy.

``run_shell`` is LocalRuntime's way: a shell line in the release's directory,
in its own process group, killed whole on timeout. KubernetesRuntime runs a
Job instead (``agent/kubernetes/runtime.py``). Both report an ``OnceResult``
whose output is the tail of the combined stdout and stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping

from agent.runtime import OnceResult

#: Output kept from a one-off command: enough for the error, bounded for a DB row.
OUTPUT_TAIL = 4000
#: Variables a one-off command inherits from the process running it; nothing else leaks in.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")

#: Seconds a one-off process may run when the caller does not say (Heroku's release phase: 1 h).
DEFAULT_RUN_TIMEOUT = 3600.0
#: The longest a one-off process may run (a day, as a Heroku one-off dyno).
MAX_RUN_TIMEOUT = 86400.0


def tail(text: str) -> str:
    return text[-OUTPUT_TAIL:]


async def run_shell(
    command: str, *, cwd: str | None, env: Mapping[str, str], timeout: float
) -> OnceResult:
    """Run ``command`` in a shell, as Heroku runs a release phase, bounded by ``timeout``."""
    full_env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    full_env.update(env)
    try:
        proc = await asyncio.create_subprocess_shell(
            command,
            cwd=cwd,
            env=full_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return OnceResult(ok=False, output=f"command could not start: {exc}")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return OnceResult(ok=False, output=f"command timed out after {timeout:g}s")
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    text = tail(out.decode(errors="replace"))
    if proc.returncode != 0:
        return OnceResult(
            ok=False, output=f"{text}\ncommand exited with code {proc.returncode}".lstrip()
        )
    return OnceResult(ok=True, output=text)
