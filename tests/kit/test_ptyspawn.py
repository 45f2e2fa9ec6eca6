"""kit/ptyspawn.py: a process on a pty of its own, with bounded buffers both ways."""

from __future__ import annotations

import asyncio
import os

from kit.ptyspawn import PtyChild, spawn_pty
from kit.spawn import DEFAULT_PATH, Confiner
from tests.helpers import TIMEOUT

ENV = {"PATH": DEFAULT_PATH, "HOME": "/tmp"}


async def shell(line: str, size: tuple[int, int] = (80, 24)) -> PtyChild:
    return await spawn_pty(
        ["/bin/sh", "-c", line],
        cwd="/tmp",
        env=ENV,
        confiner=Confiner.none("test"),
        jail=None,
        size=size,
    )


async def everything(child: PtyChild) -> bytes:
    out = b""
    async with asyncio.timeout(TIMEOUT):
        while chunk := await child.read():
            out += chunk
    return out


async def test_the_pty_is_the_controlling_terminal_of_its_size() -> None:
    child = await shell("stty size; tty; ps -o tty= -p $$", size=(132, 43))
    try:
        out = (await everything(child)).decode()
        assert await child.wait() == 0
    finally:
        child.kill()
        child.close()
    lines = out.split()
    assert lines[:2] == ["43", "132"]
    assert lines[2].startswith("/dev/pts/")
    assert lines[3] == lines[2].removeprefix("/dev/")  # the session's terminal, not just fd 0


async def test_a_fast_printer_blocks_when_nobody_reads() -> None:
    child = await shell("exec yes")  # exec: the pid is `yes` itself
    try:
        await asyncio.sleep(0.5)  # `yes` would print gigabytes meanwhile
        written = _written(child.pid)
        assert 0 < written < 1024 * 1024  # what the pty holds, not what it could print
        await asyncio.sleep(0.3)
        assert _written(child.pid) == written  # blocked on its full terminal
        assert child.returncode is None
        async with asyncio.timeout(TIMEOUT):
            assert await child.read()  # and it goes on once read
    finally:
        child.kill()
        child.close()
        await asyncio.wait_for(child.wait(), TIMEOUT)


def _written(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


async def test_typing_waits_while_the_command_does_not_read() -> None:
    # Raw, as an editor or a REPL: the line discipline then holds input back instead of
    # dropping what a line cannot take (canonical mode's 4 KiB).
    child = await shell("stty raw -echo; echo ready; exec sleep 30")
    try:
        async with asyncio.timeout(TIMEOUT):
            assert b"ready" in await child.read()
        typing = asyncio.ensure_future(child.write(b"x" * (1024 * 1024)))
        done, _ = await asyncio.wait({typing}, timeout=0.5)
        assert not done  # held back, not buffered here
        child.kill()
        child.close()  # a closed end lets the writer go
        await asyncio.wait_for(typing, TIMEOUT)
    finally:
        child.kill()
        child.close()
        await asyncio.wait_for(child.wait(), TIMEOUT)


async def test_kill_reaches_jobs_in_other_process_groups() -> None:
    # An interactive shell puts each job in its own group; the session holds them all.
    child = await shell("set -m; sleep 300 & echo bg=$!; wait")
    try:
        out = b""
        async with asyncio.timeout(TIMEOUT):
            while b"\n" not in out:
                out += await child.read()
        background = int(out.decode().split("bg=")[1].split()[0])
        assert os.getpgid(background) != os.getpgid(child.pid)
        child.kill()
        await asyncio.wait_for(child.wait(), TIMEOUT)
        async with asyncio.timeout(TIMEOUT):
            while os.path.exists(f"/proc/{background}") and not _zombie(background):
                await asyncio.sleep(0.02)
    finally:
        child.close()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True
