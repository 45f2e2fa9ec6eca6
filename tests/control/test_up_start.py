"""What ``slipway up`` says at start, and ``--idle-after`` over apps of the control plane."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp

from control.up import Up
from tests.agent.conftest import ListSink
from tests.agent.test_cli import SLIPWAY
from tests.conftest import free_ports
from tests.control.conftest import ADMIN_TOKEN, up_settings
from tests.helpers import eventually

APP = """
import http.server, os
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
"""


async def test_with_no_apps_file_it_names_every_url_and_the_token_file(tmp_path: Path) -> None:
    up = Up(up_settings(tmp_path), app_sink=ListSink(), router_sink=ListSink())
    await up.start()
    try:
        assert up.control is not None
        assert up.logs is not None
        where = up.whereabouts(tmp_path / "token")
        assert where == {
            "router_url": f"http://127.0.0.1:{up.router.port}/",
            "api_url": f"http://127.0.0.1:{up.control.port}",
            "logs_url": f"http://127.0.0.1:{up.logs.http_port}",
            "agent_url": f"http://127.0.0.1:{up.api_port}",
            "login_file": str(tmp_path / "token"),
            "apps": "",
        }
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for key in ("api_url", "logs_url", "agent_url"):
                async with http.get(where[key] + "/healthz") as response:
                    assert response.status == 200, key
            async with http.get(where["router_url"], headers={"Host": "nobody.localhost"}) as r:
                assert r.status == 404  # the router itself answers: no such app
    finally:
        await up.stop()


async def test_idle_after_reaches_apps_made_through_the_control_plane(tmp_path: Path) -> None:
    settings = dataclasses.replace(up_settings(tmp_path / "state"), idle_after=0.5)
    up = Up(settings, app_sink=ListSink(), router_sink=ListSink())
    await up.start()
    code = tmp_path / "hello"
    code.mkdir()
    (code / "app.py").write_text(APP)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        assert up.control is not None
        api = f"http://127.0.0.1:{up.control.port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.post(f"{api}/apps", json={"name": "hello"}, headers=auth) as r:
                assert r.status == 201
            release = {"artifact": str(code), "procfile": {"web": "exec python3 app.py"}}
            async with http.post(f"{api}/apps/hello/releases", json=release, headers=auth) as r:
                assert r.status == 201
            await eventually(lambda: up.router.routes.table.resolve("hello.localhost") is not None)
            router = f"http://127.0.0.1:{up.router.port}/"
            async with http.get(router, headers={"Host": "hello.localhost"}) as r:
                assert (r.status, await r.text()) == (200, "hi")
        assert up.agent.machines["hello"].config.policy.idle_after == 0.5  # not the 300 s default
        await eventually(lambda: up.agent.status("hello")["state"] == "asleep")
    finally:
        await up.stop()


def test_the_command_prints_them_in_its_first_slipway_up_line(tmp_path: Path) -> None:
    """``slipway up`` with no apps file: the line a user reads to find everything."""
    base = free_ports(6)
    names = ("port", "ops-port", "agent-port", "logs-port", "forward-port", "control-port")
    flags = {name: base + i for i, name in enumerate(names)}
    proc = subprocess.Popen(
        [SLIPWAY, "up", f"--state-dir={tmp_path / 'state'}"]
        + [f"--{name}={port}" for name, port in flags.items()],
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")},
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and 'msg="slipway up"' not in line:
            line = proc.stderr.readline()
            assert line, "slipway up ended before saying where it is"
        assert f"router_url=http://127.0.0.1:{flags['port']}/" in line
        assert f"api_url=http://127.0.0.1:{flags['control-port']}" in line
        assert f"logs_url=http://127.0.0.1:{flags['logs-port']}" in line
        assert f"login_file={tmp_path / 'state' / 'token'}" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
