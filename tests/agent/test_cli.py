"""The commands as separate processes: ``slipway serve agent`` with ``slipway serve router
--agent-url``, and ``slipway up``; each wakes the app on the first request and stops its children
on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from control.cli import main
from tests.agent.conftest import write_app
from tests.conftest import free_port

SLIPWAY = str(Path(sys.executable).parent / "slipway")


#: Until the router listens and the app woke: process starts, seconds on a loaded machine.
PATIENCE = 30.0


def request(
    port: int, host: str = "hello.test", timeout: float = PATIENCE
) -> tuple[int, str, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()  # a test that failed before communicate() leaves them open


def pid_of_app(body: str) -> int:
    return int(body.rsplit(maxsplit=1)[-1])


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_router_process_follows_an_agent_process_and_wakes_the_app(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    apps = tmp_path / "apps.toml"
    apps.write_text(write_app(tmp_path, "hello"))
    agent_port, port, ops = free_port(), free_port(), free_port()
    agent = subprocess.Popen(
        [SLIPWAY, "serve", "agent", str(apps), "--host=127.0.0.1", f"--port={agent_port}"]
    )
    processes.append(agent)
    router = subprocess.Popen(
        [
            SLIPWAY,
            "serve",
            "router",
            "--host=127.0.0.1",
            f"--port={port}",
            "--ops-host=127.0.0.1",
            f"--ops-port={ops}",
            f"--agent-url=http://127.0.0.1:{agent_port}",
        ]
    )
    processes.append(router)
    status, body, headers = request(port)
    deadline = time.monotonic() + PATIENCE
    while status == 404 and time.monotonic() < deadline:  # the feed has not arrived yet
        time.sleep(0.05)
        status, body, headers = request(port)
    assert status == 200, body
    assert "Slipway-Wake" in headers
    pid = pid_of_app(body)
    for proc in (router, agent):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert gone(pid)


def test_slipway_up_serves_the_app_and_stops_it_on_sigterm(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    apps = tmp_path / "apps.toml"
    apps.write_text(write_app(tmp_path, "hello"))
    port, ops, agent_port = free_port(), free_port(), free_port()
    up = subprocess.Popen(
        [
            SLIPWAY,
            "up",
            str(apps),
            f"--port={port}",
            f"--ops-port={ops}",
            f"--agent-port={agent_port}",
            "--idle-after=10s",
        ],
        stderr=subprocess.PIPE,
    )
    processes.append(up)
    status, body, headers = request(port)
    assert status == 200, body
    assert "Slipway-Wake" in headers
    up.send_signal(signal.SIGTERM)
    _, err = up.communicate(timeout=15)
    assert up.returncode == 0
    log = err.decode()
    assert 'msg="app waking" app=hello' in log
    assert 'msg="app awake" app=hello' in log
    # The app ran confined, its pid in a namespace of its own: look for it by directory.
    assert not running_in(tmp_path / "hello")


def running_in(directory: Path) -> list[int]:
    """Live processes whose working directory is ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory and not gone(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_the_readme_demo_wakes_hello_localhost(processes: list[subprocess.Popen[bytes]]) -> None:
    examples = Path(__file__).parents[2] / "examples" / "apps.toml"
    port, ops, agent_port = free_port(), free_port(), free_port()
    up = subprocess.Popen(
        [
            SLIPWAY,
            "up",
            str(examples),
            f"--port={port}",
            f"--ops-port={ops}",
            f"--agent-port={agent_port}",
            "--log-level=WARNING",
        ],
        stdout=subprocess.DEVNULL,
    )
    processes.append(up)
    status, body, headers = request(port, host="hello.localhost")
    assert (status, body.split(",")[0]) == (200, "Hello from web.1")
    assert "Slipway-Wake" in headers
    up.send_signal(signal.SIGTERM)
    assert up.wait(15) == 0


def test_the_router_refuses_an_agent_url_that_is_not_http() -> None:
    result = CliRunner().invoke(main, ["serve", "router", "--agent-url", "agent:9081"])
    assert result.exit_code == 2
    assert "must be an http:// or https:// URL" in result.output


def test_the_agent_refuses_a_logs_url_that_is_not_http() -> None:
    args = ["serve", "agent", "--runtime", "kubernetes", "--logs-url", "slipway-logs:8082"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--logs-url" in result.output
    assert "must be an http:// or https:// URL" in result.output


def test_the_agent_refuses_a_bad_apps_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "agent", str(tmp_path / "none.toml")])
    assert result.exit_code == 1
    assert "cannot read apps file" in result.output
