"""``slipway serve router`` as an operator runs it: a process, workers on one port, SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import free_port
from tests.router.conftest import AppProcess, wait_port


def test_two_workers_share_the_port_and_stop_on_sigterm(app: AppProcess, tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(
        json.dumps(
            {
                "version": 1,
                "apps": {
                    "hello": {
                        "hosts": ["hello.test"],
                        "endpoints": [{"host": "127.0.0.1", "port": app.port}],
                    }
                },
            }
        )
    )
    port, ops = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "control",
            "serve",
            "router",
            "--port",
            str(port),
            "--ops-port",
            str(ops),
            "--workers",
            "2",
            "--routes",
            str(routes),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(port)
        wait_port(ops)
        wait_port(ops + 1)
        for _ in range(10):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/", headers={"Host": "hello.test"}
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err.count("router listening") == 2
    assert err.count("slipway[router]: at=info") == 10


def test_a_broken_route_file_is_a_clear_error(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text('{"version": 1, "apps": {"a": {"hosts": "oops"}}}')
    result = subprocess.run(
        [sys.executable, "-m", "control", "serve", "router", "--routes", str(routes)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "hosts must be a list of host names" in result.stderr
    assert "fix the file or drop --routes" in result.stderr
