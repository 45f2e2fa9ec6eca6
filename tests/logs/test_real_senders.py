"""Senders we did not write against the forward port, read back through the HTTP API.

- The npm package ``fluent-logger`` (the official Node.js client), pinned with its
  lockfile in ``interop/node`` and installed with ``npm ci`` at test time; its
  ``send.js`` sends N events in each event mode, with ``requireAckResponse`` and the
  shared-key handshake, and prints what the client reported as JSON lines.
- The PyPI package ``fluent-logger`` (locked in requirements.lock), its sync
  ``FluentSender`` with nanosecond EventTime (its async sender is in
  test_forward_server.py).

Fluentd and Fluent Bit themselves are not installable here (test_fluentd_interop.py
replays their frames byte for byte instead).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fluent import sender

from tests.helpers import eventually
from tests.logs.conftest import ADMIN, Service, start_service

NODE_PROJECT = Path(__file__).parent / "interop" / "node"
#: npm's download cache, the one tests/heroku keeps between runs: a warm run downloads nothing.
NPM_CACHE = (
    Path(
        os.environ.get("SLIPWAY_TEST_BUILD_CACHE")
        or Path(tempfile.gettempdir()) / "slipway-test-build-cache"
    )
    / "npm"
)
KEY = "forward-s3cret"
START = 1_795_000_000
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="session")
def node_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``interop/node`` with its locked node_modules, installed once per run under basetemp.

    Skipped only without node or npm; a failing install (registry down) fails the tests.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed")
    work = tmp_path_factory.mktemp("node-fluent-logger")
    for name in ("package.json", "package-lock.json", "send.js"):
        shutil.copy(NODE_PROJECT / name, work / name)
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=work,
        env={
            **os.environ,
            "npm_config_cache": str(NPM_CACHE),
            "npm_config_update_notifier": "false",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return work


@dataclass
class Run:
    status: int
    events: list[dict[str, Any]]
    stderr: str

    @property
    def done(self) -> dict[str, Any]:
        [done] = [e for e in self.events if e["event"] == "done"]
        return done


async def send(project: Path, port: int, **cfg: Any) -> Run:
    """``node send.js`` with its config; at most 25 s, then it is killed."""
    cfg = {"port": port, "tag": "slipway.shop", "label": "web.1", "start": START, **cfg}
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(project / "send.js"),
        json.dumps(cfg),
        cwd=project,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(25):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    return Run(proc.returncode, events, err.decode())


async def read_lines(svc: Service, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
    """The app's history as ``slipway logs`` reads it: the SSE API without ``tail``."""
    async with http.get(f"{svc.url}/apps/shop/logs?lines=1500", headers=AUTH) as resp:
        assert resp.status == 200
        body = await resp.text()
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


@pytest.fixture
async def keyed(tmp_path: Path) -> Any:
    """The service as ``slipway up`` runs it: a shared key on the forward port."""
    svc, stop = await start_service(tmp_path, shared_key=KEY)
    yield svc
    await stop()


MODES = ["Message", "PackedForward", "CompressedPackedForward"]


class TestNodeFluentLogger:
    @pytest.mark.parametrize("time", ["event", "int"])
    @pytest.mark.parametrize("mode", MODES)
    async def test_every_event_is_acked_and_kept_with_its_time(
        self,
        node_project: Path,
        keyed: Service,
        http: aiohttp.ClientSession,
        mode: str,
        time: str,
    ) -> None:
        n = 20
        run = await send(
            node_project,
            keyed.forward_port,
            mode=mode,
            time=time,
            count=n,
            sharedKey=KEY,
            clientHostname="node-app",
        )
        assert run.status == 0, run
        assert run.done == {"event": "done", "acked": n, "settled": n, "errors": []}
        lines = await read_lines(keyed, http)
        assert [line["text"] for line in lines] == [f"node {mode} {time} {i}" for i in range(n)]
        assert {(line["source"], line["process"]) for line in lines} == {("app", "web.1")}
        fraction = [0.123456789 + i * 1e-9 for i in range(n)] if time == "event" else [0.0] * n
        assert [line["time"] for line in lines] == pytest.approx(
            [START + i + fraction[i] for i in range(n)], abs=1e-6
        )
        assert keyed.sample("slipway_logs_lines_received_total", source="app") == n
        assert keyed.sample("slipway_logs_forward_errors_total", reason="bad_size") == 0

    async def test_without_a_key_on_either_side_message_mode_is_acked(
        self, node_project: Path, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        run = await send(node_project, svc.forward_port, mode="Message", time="int", count=3)
        assert run.status == 0, run
        assert run.done["acked"] == 3
        assert len(await read_lines(svc, http)) == 3

    async def test_a_wrong_key_is_refused_and_the_client_says_so(
        self, node_project: Path, keyed: Service, http: aiohttp.ClientSession
    ) -> None:
        run = await send(
            node_project,
            keyed.forward_port,
            mode="Message",
            time="event",
            count=3,
            sharedKey="not-the-key",
            clientHostname="node-app",
        )
        assert run.status == 1, run
        assert run.done["acked"] == 0
        assert run.done["errors"] == [
            {"name": "HandshakeError", "message": "Authentication failed: shared_key mismatch"}
        ]
        await eventually(
            lambda: keyed.sample("slipway_logs_forward_errors_total", reason="handshake")
        )
        assert await read_lines(keyed, http) == []


class TestPythonFluentLogger:
    async def test_the_sync_sender_with_nanosecond_eventtime(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        overflowed: list[bytes] = []
        s = sender.FluentSender(
            "slipway.shop",
            host="127.0.0.1",
            port=svc.forward_port,
            nanosecond_precision=True,
            buffer_overflow_handler=overflowed.append,
        )
        n = 20
        for i in range(n):
            sent = await asyncio.to_thread(
                s.emit_with_time, "worker.1", START + i + 0.25, {"message": f"py {i}"}
            )
            assert sent, s.last_error
        await asyncio.to_thread(s.close)
        await eventually(lambda: svc.sample("slipway_logs_lines_received_total", source="app") == n)
        lines = await read_lines(svc, http)
        assert [line["text"] for line in lines] == [f"py {i}" for i in range(n)]
        assert [line["process"] for line in lines] == ["worker.1"] * n
        assert [line["time"] for line in lines] == [START + i + 0.25 for i in range(n)]
        assert overflowed == []
