"""``slipway serve control`` as a real child process, for clients that block (CLI, schemathesis).

A blocking client cannot share an event loop with the server it calls, so
these tests talk to the API in another process, the way users do.
"""

from __future__ import annotations

import asyncio
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

from click.testing import CliRunner

from control.addons.postgres import PostgresAddons
from control.addons.redis import RedisAddons
from control.store.db import Store
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


def cli_runner(server: Server, config_home: Path) -> CliRunner:
    """A CliRunner speaking to ``server`` with its admin token, no app and no login file."""
    return CliRunner(
        env={
            "SLIPWAY_API_URL": server.url,
            "SLIPWAY_TOKEN": server.token,
            "SLIPWAY_APP": None,
            "XDG_CONFIG_HOME": str(config_home),
        }
    )


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
    ready = False
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
        ready = True
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Whatever a test (or the fuzzer) left, the shared servers must not keep it:
        # destroy every add-on still in the server's registry, straight from its store.
        # A server that never became ready made none, and may not have made its tables
        # either: reading them would replace the "did not start" error with "no such table".
        if ready:
            asyncio.run(_destroy_leftovers(f"sqlite+aiosqlite:///{tmp}/state.db"))


async def _destroy_leftovers(db_url: str) -> None:
    store = Store.open(db_url)
    provisioners = {
        "postgres": PostgresAddons(
            admin_dsn=ADMIN_DSN, public_host="127.0.0.1", public_port=5432, prefix=TEST_PREFIX
        ),
        "redis": RedisAddons(
            admin_url=REDIS_URL, public_host="127.0.0.1", public_port=6379, prefix=TEST_PREFIX
        ),
    }
    try:
        async with store.tx(write=False) as tx:
            leftovers = await tx.all_addons()
        for addon in leftovers:
            await provisioners[addon.service].destroy(addon.resource)
    finally:
        await store.close()
