"""``slipway serve router`` as an operator runs it: a process, workers on one port, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, free_ports
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
    port, ops = free_port(), free_ports(3)  # ops, and worker 0 and 1 on ops + 1, ops + 2
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
        assert until_ready(ops) == 200  # every worker listens (the parent asks each)
        for _ in range(20):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/", headers={"Host": "hello.test"}
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.status == 200
        # One ops port for the pod: every worker's series, labelled by worker.
        families = scrape(ops)
        requests = families["slipway_router_requests"].samples
        by_worker = {s.labels["worker"]: s.value for s in requests if s.name.endswith("_total")}
        assert set(by_worker) <= {"0", "1"}
        assert sum(by_worker.values()) == 20
        up = {s.labels["worker"]: s.value for s in families["slipway_router_worker_up"].samples}
        assert up == {"0": 1.0, "1": 1.0}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == 0, err
    assert err.count("router listening") == 2
    assert err.count("slipway[router]: at=info") == 20


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill (if still running) and reap it, closing its pipe: a failed test leaks nothing."""
    proc.kill()
    proc.communicate(timeout=30)


def scrape(port: int) -> dict[str, Metric]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def until_ready(port: int) -> int:
    deadline = time.monotonic() + 30  # workers boot on a loaded machine too
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_worker_that_dies_takes_the_router_down_to_be_restarted(tmp_path: Path) -> None:
    port, ops = free_port(), free_ports(3)  # ops, and worker 0 and 1 on ops + 1, ops + 2
    proc = subprocess.Popen(
        [sys.executable, "-m", "control", "serve", "router", "--port", str(port),
         "--ops-port", str(ops), "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_port(ops)
        until_ready(ops)
        with urllib.request.urlopen(f"http://127.0.0.1:{ops + 2}/healthz", timeout=5) as resp:
            assert resp.status == 200  # worker 1's own ops port, private, on loopback
        children = [
            int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        ]
        assert len(children) == 2
        os.kill(children[1], signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode != 0
    assert "a router worker exited; stopping the others" in err
    for child in children:  # the other worker was stopped, and both were reaped
        assert not Path(f"/proc/{child}").exists()


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
