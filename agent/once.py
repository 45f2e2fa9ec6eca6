"""One-off processes of an app's release: the release phase, postdeploy, pr-predestroy.

``run_shell`` is LocalRuntime's way: a shell line in the release's directory,
through the one spawner (kit/spawn.py: clean env, confined, its own process
group), killed whole on timeout. KubernetesRuntime runs a
Job instead (``agent/kubernetes/runtime.py``). Both report an ``OnceResult``
whose output is the tail of the combined stdout and stderr. ``open_shell`` is
the interactive kind (``slipway run bash`` on a terminal): the same process on
a pty (kit/ptyspawn.py), LocalRuntime's only.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping

from agent.runtime import OnceResult
from kit.oneoff import WATCHER, Watcher
from kit.ptyspawn import PtyChild, spawn_pty
from kit.spawn import Child, Confiner, Jail, app_env, spawn

#: Output kept from a one-off command: enough for the error, bounded for a DB row.
OUTPUT_TAIL = 4000

#: Heroku's DYNO for the release phase (one-off runs are ``run.N``).
RELEASE_DYNO = "release.1"

#: Seconds a one-off process may run when the caller does not say (Heroku's release phase: 1 h).
DEFAULT_RUN_TIMEOUT = 3600.0
#: The longest a one-off process may run (a day, as a Heroku one-off dyno).
MAX_RUN_TIMEOUT = 86400.0


def tail(text: str) -> str:
    return text[-OUTPUT_TAIL:]


async def run_shell(
    command: str,
    *,
    cwd: str | None,
    env: Mapping[str, str],
    timeout: float,
    dyno: str = "run.1",
    confiner: Confiner | None = None,
    jail: Jail | None = None,
    running: Callable[[Child | None], None] | None = None,
) -> OnceResult:
    """Run ``command`` in a shell, as Heroku runs a release phase, bounded by ``timeout``.

    Through the one spawner (kit/spawn.py): its config vars and the platform's own
    (DYNO, HOME), never this process's environment; confined when ``confiner`` is.
    ``running(child)`` is told the process once it runs and ``running(None)`` once it has
    ended (LocalRuntime: so the dyno monitor samples one-off processes too).
    """
    watcher = WATCHER.get()
    if watcher is not None:
        # `slipway run` names its one-off (run.1234) as Heroku does: that is its DYNO.
        dyno = watcher.dyno = watcher.name or dyno
    try:
        proc = await spawn(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=app_env(env, home=cwd, platform={"DYNO": dyno}),
            confiner=confiner,
            jail=jail,
            merge_stderr=True,
        )
    except OSError as exc:
        return OnceResult(ok=False, output=f"command could not start: {exc}")
    if running is not None:
        running(proc)
    try:
        async with asyncio.timeout(timeout):
            out = await _tail_of(proc.stdout, watcher)
            code = await proc.wait()
        if watcher is not None:
            watcher.code = code
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return OnceResult(ok=False, output=f"command timed out after {timeout:g}s")
    except asyncio.CancelledError:
        proc.kill()
        raise
    finally:
        if running is not None:
            running(None)
        proc.close()
    text = tail(out.decode(errors="replace"))
    if code != 0:
        return OnceResult(ok=False, output=f"{text}\ncommand exited with code {code}".lstrip())
    return OnceResult(ok=True, output=text)


async def _tail_of(stream: asyncio.StreamReader, watcher: Watcher | None = None) -> bytes:
    """All of the output, keeping only its end: a chatty command cannot fill memory.
    A watcher (``slipway run``) gets every chunk as it comes."""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-OUTPUT_TAIL * 4 :]
        if watcher is not None:
            watcher.output(chunk)
    return kept


#: TERM as a client may send it (xterm-256color, screen.xterm): it names a terminfo entry.
TERM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


async def open_shell(
    command: str,
    *,
    cwd: str | None,
    env: Mapping[str, str],
    dyno: str,
    size: tuple[int, int],
    term: str = "",
    confiner: Confiner | None = None,
    jail: Jail | None = None,
) -> PtyChild:
    """``command`` in a shell on a pty (``slipway run bash``): the environment, directory
    and confinement ``run_shell`` gives, plus the caller's TERM (its terminal's type).
    The caller owns the process: it reads, writes, and kills it when the session ends."""
    platform = {"DYNO": dyno}
    if TERM_NAME.match(term):
        platform["TERM"] = term
    return await spawn_pty(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env=app_env(env, home=cwd, platform=platform),
        confiner=confiner or Confiner.none("no confinement asked for"),
        jail=jail,
        size=size,
    )
