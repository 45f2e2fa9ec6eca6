"""``slipway serve control`` as a real child process, for clients that block (CLI, schemathesis).

A blocking client cannot share an event loop with the server it calls, so
these tests talk to the API in another process, the way users do.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port
from tests.control.conftest import ADMIN_DSN, ADMIN_TOKEN, REDIS_URL, TEST_PREFIX

#: Start-up includes migrations; generous for a machine shared by six agents.
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    stderr: Path

    def call(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())


@contextlib.contextmanager
def control_server(tmp: Path, *, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        "SLIPWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "SLIPWAY_DB_URL": f"sqlite+aiosqlite:///{tmp}/state.db",
        "SLIPWAY_CONTROL_PORT": str(port),
        "SLIPWAY_ADDON_POSTGRES_DSN": ADMIN_DSN,
        "SLIPWAY_ADDON_REDIS_URL": REDIS_URL,
        "SLIPWAY_ADDON_PREFIX": TEST_PREFIX,
        "SLIPWAY_EXPORTER_TARGETS_DIR": str(tmp / "exporters"),
        **(extra_env or {}),
    }
    stderr = tmp / "control.log"
    with stderr.open("wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "slipway"), "serve", "control"],
            env=env,
            stdout=log,
            stderr=log,
            cwd=Path(__file__).parents[2],
        )
    server = Server(url=f"http://127.0.0.1:{port}", token=ADMIN_TOKEN, stderr=stderr)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(server.url + "/readyz", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"control server did not start:\n{stderr.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        with contextlib.suppress(OSError):
            # Add-ons a test left behind must not stay on the shared servers.
            apps = server.call("GET", "/apps")
            assert isinstance(apps, list)
            for app in apps:
                server.call("DELETE", f"/apps/{app['name']}")
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
