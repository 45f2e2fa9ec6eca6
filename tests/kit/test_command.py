"""kit.command.output: a command's output, and no child left behind on any way out."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from kit import command


def started_pid(path: Path) -> int:
    deadline = time.monotonic() + 10
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, "the child never wrote its pid"
        time.sleep(0.01)
    return int(path.read_text())


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def sleeper(path: Path) -> list[str]:
    """A child that writes its pid at once (a shell starts in milliseconds) and sleeps."""
    return ["/bin/sh", "-c", f"echo $$ > {path}; exec sleep 60"]


async def test_output_and_exit_code_with_stderr_folded_in_or_dropped() -> None:
    argv = [
        sys.executable,
        "-c",
        "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)",
    ]
    code, out = await command.output(argv, timeout=10)
    assert code == 3
    assert out.split() == [b"out", b"err"]
    code, out = await command.output(argv, timeout=10, stderr=False)
    assert (code, out.split()) == (3, [b"out"])


async def test_a_timeout_kills_and_reaps_the_child(tmp_path: Path) -> None:
    path = tmp_path / "pid"
    with pytest.raises(TimeoutError):
        await command.output(sleeper(path), timeout=3.0)
    assert gone(started_pid(path))


async def test_cancelling_the_caller_kills_and_reaps_the_child(tmp_path: Path) -> None:
    path = tmp_path / "pid"
    task = asyncio.ensure_future(command.output(sleeper(path), timeout=60))
    async with asyncio.timeout(10):
        while not path.exists() or not path.read_text().strip():
            await asyncio.sleep(0.01)
    pid = int(path.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gone(pid)  # waited for, so not even a zombie is left


async def test_a_missing_program_is_an_os_error() -> None:
    with pytest.raises(OSError, match="slipway-no-such-program"):
        await command.output(["/nonexistent/slipway-no-such-program"], timeout=5)
