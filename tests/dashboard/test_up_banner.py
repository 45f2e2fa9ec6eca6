"""`slipway up` prints the dashboard's URL, and the first admin's password once, ever."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

from tests.conftest import free_port

#: Bound on `slipway up` starting (migrations, every component) on a shared CPU.
START = 30.0


async def run_up(state: Path) -> tuple[list[str], str]:
    """Start `slipway up`, read what it prints until it serves, stop it: (dashboard lines,
    the dashboard's URL)."""
    ports = {name: str(free_port()) for name in ("port", "ops", "agent", "logs", "fwd", "ctl")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "control", "up", "--state-dir", str(state),
        "--port", ports["port"], "--ops-port", ports["ops"], "--agent-port", ports["agent"],
        "--logs-port", ports["logs"], "--forward-port", ports["fwd"],
        "--control-port", ports["ctl"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "SLIPWAY_TOKEN": ""},
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(START):
            while not lines or not lines[-1].startswith("dashboard: http"):
                line = (await process.stdout.readline()).decode()
                assert line, "slipway up exited before printing the dashboard's URL"
                if line.startswith("dashboard:"):
                    lines.append(line.strip())
        url = lines[0].removeprefix("dashboard: ")
        async with aiohttp.ClientSession() as session, session.get(url) as reply:
            assert reply.status == 200
            assert "Sign in" in await reply.text()
    finally:
        process.send_signal(signal.SIGTERM)
        # The password line, if any, follows the URL: all that was printed is read up to
        # the end of the output (the process has stopped), not for a fixed second after
        # the URL, which a loaded machine could let pass between the two lines.
        async with asyncio.timeout(START):
            rest = (await process.stdout.read()).decode()
            await process.wait()
    lines += [line.strip() for line in rest.splitlines() if line.startswith("dashboard:")]
    return lines, url


async def test_the_first_start_prints_the_url_and_a_password_and_the_next_only_the_url(
    tmp_path: Path,
) -> None:
    first, url = await run_up(tmp_path / "state")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/dashboard/", url)
    assert len(first) == 2
    match = re.search(r"user admin, password (\S+) ", first[1])
    assert match is not None
    assert len(match.group(1)) >= 20
    again, _ = await run_up(tmp_path / "state")
    assert len(again) == 1
    assert "password" not in again[0]
