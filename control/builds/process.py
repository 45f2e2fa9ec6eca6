"""One build step: a subprocess in its own process group, its output streamed by line.

The group matters: pip and npm start children of their own (build backends,
lifecycle scripts), and a timeout that killed only the direct child would
leave them running and writing into a directory that is being deleted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from control.builds.errors import BuildFailed
from kit.spawn import Confiner, Jail, spawn

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
    confiner: Confiner | None = None,
    jail: Jail | None = None,
) -> None:
    """Run ``argv``; every output line goes to ``on_line`` and ``tail``.

    Through the one spawner (kit/spawn.py): confined as the app's own processes
    when ``confiner`` is, in a session of its own, dead with slipway. Raises
    BuildFailed (with ``tail``) on a non-zero exit. Cancelling the caller (a
    timeout) kills the whole process group before returning.
    """
    try:
        proc = await spawn(
            argv, cwd=str(cwd), env=env, confiner=confiner, jail=jail, merge_stderr=True
        )
    except OSError as exc:
        raise BuildFailed(f"{what}: cannot start {argv[0]!r}: {exc.strerror}") from exc
    try:
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
        proc.kill()
        await proc.wait()
        raise
    finally:
        proc.close()
    if code != 0:
        raise BuildFailed(f"{what} failed (exit status {code})", tail=tuple(tail))
