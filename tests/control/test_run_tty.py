"""``slipway run sh`` on a terminal under ``slipway up``: the real CLI on a pty of the test's,
a WebSocket to the real control plane, the agent's pty in its runtime, real processes."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from control.up import Up
from kit.spawn import detect
from tests.agent.conftest import ListSink
from tests.control.conftest import ADMIN_TOKEN, up_settings
from tests.control.test_heroku_up import cli_of, deploy_web_app
from tests.helpers import TIMEOUT, eventually

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def started(running: Up) -> AsyncIterator[Up]:
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Up]:
    async with started(Up(up_settings(tmp_path), app_sink=ListSink())) as running:
        yield running


@pytest.fixture
async def impatient(tmp_path: Path) -> AsyncIterator[Up]:
    settings = up_settings(tmp_path, run_idle_timeout=2.0)
    async with started(Up(settings, app_sink=ListSink())) as running:
        yield running


@pytest.fixture
async def confined(tmp_path: Path) -> AsyncIterator[Up]:
    confiner = detect()
    if not confiner.confined:
        pytest.skip(f"no sandbox here: {confiner.reason}")
    up = Up(up_settings(tmp_path), app_sink=ListSink(), confiner=confiner)
    async with started(up) as running:
        yield running


class Terminal:
    """The CLI as a person runs it: its stdin, stdout and stderr a pty the test holds."""

    def __init__(self, api: str, app: str, *args: str, token: str = ADMIN_TOKEN) -> None:
        self.master, slave = os.openpty()
        self.resize(101, 33)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "SLIPWAY_API_URL": api,
            "SLIPWAY_TOKEN": token,
            "TERM": "xterm",
            "HOME": "/tmp",
        }
        self.proc = subprocess.Popen(
            ["setsid", "--ctty", "--", sys.executable, "-m", "control", "run", "-a", app, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
        )
        os.close(slave)
        os.set_blocking(self.master, False)
        self.seen = b""

    def resize(self, cols: int, rows: int) -> None:
        # On the test's end: the kernel sends SIGWINCH to the CLI, as a terminal emulator does.
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self.master, 65536):
                self.seen += chunk

    async def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            found = re.search(pattern.encode(), self.seen)
            if found:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"{pattern!r} never came; the terminal shows {self.seen!r}")

    async def exit_code(self) -> int:
        async with asyncio.timeout(TIMEOUT):
            while self.proc.poll() is None:
                self._drain()
                await asyncio.sleep(0.02)
        self._drain()
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        os.close(self.master)


@contextlib.asynccontextmanager
async def terminal(
    up: Up | str, app: str, *args: str, token: str = ADMIN_TOKEN
) -> AsyncIterator[Terminal]:
    """The CLI against ``up``'s control plane (or the API at that URL)."""
    if isinstance(up, Up):
        assert up.control is not None
        up = f"http://127.0.0.1:{up.control.port}"
    term = Terminal(up, app, *args, token=token)
    try:
        yield term
    finally:
        term.close()


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie its parent has yet to reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def deployed(up: Up, tmp_path: Path, name: str) -> None:
    await deploy_web_app(cli_of(up, tmp_path), name, tmp_path / name)


class TestInteractiveRun:
    async def test_dyno_terminal_window_size_and_exit_code(self, up: Up, tmp_path: Path) -> None:
        await deployed(up, tmp_path, "shell")
        async with terminal(up, "shell", "sh") as term:
            await term.expect(r"up, run\.\d+")
            term.type("stty size\n")
            await term.expect(r"33 101")
            term.resize(120, 40)
            deadline = time.monotonic() + TIMEOUT
            while b"40 120" not in term.seen and time.monotonic() < deadline:
                term.type("stty size\n")  # SIGWINCH and keys race: ask until it shows
                with contextlib.suppress(AssertionError):
                    await term.expect(r"40 120", timeout=0.5)
            assert b"40 120" in term.seen
            term.type("echo dyno=$DYNO; tty; exit 3\n")
            found = await term.expect(r"dyno=(run\.\d+)\r\n(/dev/pts/\d+)")
            assert await term.exit_code() == 3
        announced = re.search(rb"up, (run\.\d+)", term.seen)
        assert announced
        assert announced.group(1) == found.group(1)

    async def test_ctrl_c_reaches_the_remote_job_not_the_cli(self, up: Up, tmp_path: Path) -> None:
        await deployed(up, tmp_path, "keys")
        async with terminal(up, "keys", "sh") as term:
            await term.expect(r"up, run\.\d+")
            term.type("sleep 60; echo woke-$((2+3))\n")
            await asyncio.sleep(0.5)
            term.type("\x03")
            term.type("echo still-$((40+2))\n")
            await term.expect(r"still-42")
            assert b"woke-5" not in term.seen
            assert term.proc.poll() is None
            term.type("exit\n")
            assert await term.exit_code() == 0

    async def test_a_closed_connection_kills_the_whole_session(
        self, up: Up, tmp_path: Path
    ) -> None:
        await deployed(up, tmp_path, "hangup")
        async with terminal(up, "hangup", "sh") as term:
            await term.expect(r"up, run\.\d+")
            term.type("sleep 300 & echo bg=$!; echo me=$$\n")
            background = int((await term.expect(r"bg=(\d+)")).group(1))
            shell = int((await term.expect(r"me=(\d+)")).group(1))
            assert not gone(background)
            assert not gone(shell)
            term.proc.kill()  # the CLI dies: its socket closes, nothing says goodbye
        await eventually(lambda: gone(shell) and gone(background))
        await eventually(lambda: not up.runtime.running())

    async def test_an_idle_session_is_closed(self, impatient: Up, tmp_path: Path) -> None:
        await deployed(impatient, tmp_path, "idle")
        async with terminal(impatient, "idle", "sh") as term:
            await term.expect(r"up, run\.\d+")
            term.type("echo me=$$\n")
            shell = int((await term.expect(r"me=(\d+)")).group(1))
            await term.expect(r"closed after 2s with no input or output")
            assert await term.exit_code() == 1
        assert gone(shell)

    async def test_a_token_for_another_app_is_refused_before_anything_runs(
        self, up: Up, tmp_path: Path
    ) -> None:
        assert up.control is not None
        await deployed(up, tmp_path, "mine")
        base = f"http://127.0.0.1:{up.control.port}"
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http:
            async with http.post(f"{base}/apps", json={"name": "theirs"}, headers=admin) as r:
                assert r.status == 201, await r.text()
            body = {"name": "other", "app": "theirs"}
            async with http.post(f"{base}/tokens", json=body, headers=admin) as r:
                other = (await r.json())["token"]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(
                    f"{base}/apps/mine/dynos/tty", headers={"Authorization": f"Bearer {other}"}
                )
            assert refused.value.status == 403
            # The app's own token, without the upgrade: told what the endpoint speaks.
            async with http.get(f"{base}/apps/mine/dynos/tty", headers=admin) as r:
                assert r.status == 400
                assert "WebSocket" in (await r.json())["message"]
        async with terminal(up, "mine", "sh", token=other) as term:
            await term.expect(r"Error: .*\(forbidden\)")
            assert await term.exit_code() == 1
        assert up.runtime.running() == []
        assert b"up, run" not in term.seen

    async def test_a_client_that_does_not_read_holds_a_fast_printer_back(
        self, up: Up, tmp_path: Path
    ) -> None:
        assert up.control is not None
        await deployed(up, tmp_path, "flood")
        url = f"http://127.0.0.1:{up.control.port}/apps/flood/dynos/tty"
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http,
            http.ws_connect(url, headers=auth) as ws,
        ):
            await ws.send_json({"command": "echo pid=$$; exec yes", "cols": 80, "rows": 24})
            seen = ""
            async with asyncio.timeout(TIMEOUT):
                while "pid=" not in seen or "\n" not in seen.split("pid=")[1]:
                    msg = await ws.receive()
                    seen += msg.data.decode() if msg.type is aiohttp.WSMsgType.BINARY else ""
            pid = int(seen.split("pid=")[1].split()[0])
            await asyncio.sleep(1.0)  # nobody reads: pty, relay and sockets fill, then it waits
            with open(f"/proc/{pid}/io") as f:
                before = next(int(x.split()[1]) for x in f if x.startswith("wchar:"))
            await asyncio.sleep(0.5)
            with open(f"/proc/{pid}/io") as f:
                after = next(int(x.split()[1]) for x in f if x.startswith("wchar:"))
            assert after == before  # held back, not buffered in the control plane
            assert before < 64 * 1024 * 1024
        await eventually(lambda: gone(pid))

    async def test_no_tty_keeps_the_streamed_run(self, up: Up, tmp_path: Path) -> None:
        await deployed(up, tmp_path, "plain")
        async with terminal(up, "plain", "--no-tty", "sh", "-c", "'tty; exit 4'") as term:
            await term.expect(r"not a tty")
            assert await term.exit_code() == 4


class TestConfinedInteractiveRun:
    async def test_the_sandbox_has_its_terminal_and_no_other(
        self, confined: Up, tmp_path: Path
    ) -> None:
        await deployed(confined, tmp_path, "boxed")
        async with terminal(confined, "boxed", "sh") as term:
            await term.expect(r"up, run\.\d+")
            term.type("echo dyno=$DYNO; tty; ls /dev/pts; id -u\n")
            found = await term.expect(r"dyno=run\.\d+\r\n/dev/pts/(\d+)\r\n(\S+)\r\n(\d+)")
            assert found.group(1) == found.group(2)  # the one terminal in its /dev/pts
            if os.geteuid() == 0:
                assert int(found.group(3)) >= 610000  # the app's own uid
            term.type("sleep 60; echo woke-$((2+3))\n")
            await asyncio.sleep(0.5)
            term.type("\x03")
            term.type("echo still-$((40+2)); exit 5\n")
            await term.expect(r"still-42")
            assert await term.exit_code() == 5
            assert b"woke-5" not in term.seen


async def test_a_session_killed_by_signal_reports_128_plus_it(up: Up, tmp_path: Path) -> None:
    await deployed(up, tmp_path, "sig")
    async with terminal(up, "sig", "sh") as term:
        await term.expect(r"up, run\.\d+")
        term.type("kill -KILL $$\n")
        assert await term.exit_code() == 128 + signal.SIGKILL


async def test_stopping_slipway_ends_open_sessions(tmp_path: Path) -> None:
    running = Up(up_settings(tmp_path), app_sink=ListSink())
    await running.start()
    stopped = False
    try:
        await deployed(running, tmp_path, "stopping")
        async with terminal(running, "stopping", "sh") as term:
            await term.expect(r"up, run\.\d+")
            term.type("echo me=$$\n")
            shell = int((await term.expect(r"me=(\d+)")).group(1))
            async with asyncio.timeout(TIMEOUT):
                await running.stop()  # not held by the open socket
            stopped = True
            assert gone(shell)
            assert await term.exit_code() == 1
            await term.expect(r"Error: the run ended without an exit code")
    finally:
        if not stopped:
            await running.stop()
