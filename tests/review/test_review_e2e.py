"""Review apps end to end: signed GitHub deliveries in, a running app per pull request out.

A real git repository made here holds a stdlib-only Python web app (so the
build needs no index) with an app.json asking for a Postgres add-on, a
generated secret, a postdeploy and a pr-predestroy script. Deliveries are
GitHub's documented ``pull_request`` payloads, signed with the webhook
secret. ``slipway up`` itself answers them: its control plane (real
builder, real Postgres provisioner) releases to its agent (real processes
under LocalRuntime), whose route table its router serves at
``pr-N.{domain}``, so a review app sleeps and wakes like any other.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from control.review.apply import ControlReviewApps
from control.review.github import sign
from control.settings import AddonServers, BuildServerSettings, ReviewSettings
from control.up import Up
from tests.agent.conftest import ListSink
from tests.builds.apps import commit
from tests.control.conftest import ADMIN_DSN, ADMIN_TOKEN, TEST_PREFIX, up_settings
from tests.review.payloads import pull_request

SECRET = "it's-a-secret-to-everybody"
DOMAIN = "review.test"
PIPELINE = "shop"
#: Bound on a review app being built, released and answering (two builds' worth, shared CPU).
SETTLE = 45.0

SERVER = textwrap.dedent(
    """
    import http.server, os, pathlib

    VERSION = {version!r}

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seed = pathlib.Path(os.environ["SEED_FILE"])
            body = "|".join([
                VERSION,
                os.environ.get("GREETING", "-"),
                "db" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "no-db",
                str(len(os.environ.get("SECRET_KEY", ""))),
                seed.read_text() if seed.exists() else "unseeded",
            ]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
    """
)
# Runs with the app's env: proof that postdeploy saw the add-on's URL.
SEED = (
    "import os, pathlib\n"
    "url = os.environ['DATABASE_URL']\n"
    "name = url.rsplit('/', 1)[1].split('?')[0]  # the URL ends in ?sslmode=...\n"
    "pathlib.Path(os.environ['SEED_FILE']).write_text('seeded ' + name)\n"
    "print('seeding done', flush=True)\n"
)
PREDESTROY = (
    "import os, pathlib\n"
    "pathlib.Path(os.environ['SEED_FILE'] + '.destroyed').write_text(os.environ['GREETING'])\n"
)


def app_files(version: str, seed_file: Path) -> dict[str, str | bytes]:
    app_json = {
        "name": "shop",
        "env": {"SECRET_KEY": {"generator": "secret"}, "SEED_FILE": str(seed_file)},
        "scripts": {"pr-predestroy": "python predestroy.py"},
        "environments": {
            "review": {
                "env": {"GREETING": "review"},
                "addons": ["heroku-postgresql"],
                "scripts": {"postdeploy": "python seed.py"},
            }
        },
    }
    return {
        "Procfile": "web: python server.py\n",
        "requirements.txt": "# the standard library is enough\n",
        "server.py": SERVER.format(version=version),
        "seed.py": SEED,
        "predestroy.py": PREDESTROY,
        "app.json": json.dumps(app_json, indent=2),
    }


@dataclass
class World:
    up: Up
    review: ControlReviewApps
    session: aiohttp.ClientSession
    repo: Path
    seed_file: Path
    sink: ListSink

    @property
    def api(self) -> str:
        assert self.up.control is not None
        return f"http://127.0.0.1:{self.up.control.port}"

    async def deliver(
        self,
        payload: dict[str, Any],
        *,
        delivery: str | None = None,
        secret: str = SECRET,
        event: str = "pull_request",
    ) -> tuple[int, dict[str, Any]]:
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(secret.encode(), body),
            "User-Agent": "GitHub-Hookshot/044aadd",
        }
        async with self.session.post(
            f"{self.api}/github/webhooks", data=body, headers=headers
        ) as response:
            return response.status, await response.json()

    async def call(self, method: str, path: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with self.session.request(method, self.api + path, headers=headers) as response:
            return response.status, await response.json()

    async def logs(self, app: str, source: str) -> str:
        """The app's lines of one source, as the logs service serves them (text)."""
        assert self.up.logs is not None
        url = f"http://127.0.0.1:{self.up.logs.http_port}/apps/{app}/logs"
        params = {"source": source, "format": "text"}
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with self.session.get(url, params=params, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.text()

    async def through_router(self, host: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.up.router.port}/"
        async with self.session.get(url, headers={"Host": host}) as response:
            return response.status, await response.text()

    async def answers(self, host: str, version: str) -> list[str]:
        """Wait until ``host`` answers through the router with ``version``; the answer's fields."""
        deadline = asyncio.get_running_loop().time() + SETTLE
        last: tuple[int, str] = (0, "")
        while asyncio.get_running_loop().time() < deadline:
            last = await self.through_router(host)
            if last[0] == 200 and last[1].startswith(version + "|"):
                return last[1].split("|")
            await asyncio.sleep(0.1)
        raise AssertionError(f"{host} did not answer {version} within {SETTLE}s: {last}")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    sink = ListSink()
    settings = up_settings(
        tmp_path,
        addons=AddonServers(postgres_admin_dsn=ADMIN_DSN),
        builds=BuildServerSettings(root=str(tmp_path / "builds"), timeout=60),
        review=ReviewSettings(
            webhook_secret=SECRET, pipeline=PIPELINE, domain=DOMAIN, staging_app="shop-staging"
        ),
    )
    up = Up(settings, app_sink=sink, router_sink=sink, addon_prefix=TEST_PREFIX)
    assert up.control is not None
    assert up.control.review is not None
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(up, up.control.review, session, tmp_path / "repo", tmp_path / "seed.txt", sink)
        assert not up.failed.is_set()
    finally:
        await session.close()
        control = up.control.control
        await up.stop()
        # A failed test must not leave add-on databases on the shared server.
        async with control.store.tx(write=False) as tx:
            leftovers = await tx.all_addons()
        for addon in leftovers:
            await control.provisioners[addon.service].destroy(addon.resource)


async def database_exists(name: str) -> bool:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN) as conn:
        cursor = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return await cursor.fetchone() is not None


async def role_exists(name: str) -> bool:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN) as conn:
        cursor = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        return await cursor.fetchone() is not None


class TestAPullRequestsLife:
    async def test_open_push_close(self, world: World) -> None:
        app, host = f"{PIPELINE}-pr-7", f"pr-7.{DOMAIN}"
        first = commit(world.repo, app_files("v1", world.seed_file), "first")
        opened = pull_request("opened", 7, head_sha=first, clone_url=str(world.repo))

        # Forged: refused before anything is read, nothing is made.
        status, body = await world.deliver(opened, secret="wrong secret")
        assert (status, body["status"]) == (401, "rejected")
        assert (await world.call("GET", f"/apps/{app}"))[0] == 404

        # Opened: the app is made, built, released, seeded, and answers at pr-7.
        delivery = str(uuid.uuid4())
        status, body = await world.deliver(opened, delivery=delivery)
        assert (status, body["status"]) == (202, "accepted"), body
        assert body["summary"] == f"PR #7 opened at {first[:7]}: create {app}"
        await asyncio.wait_for(world.review.idle(), SETTLE)
        _, greeting, db, secret_len, seeded = await world.answers(host, "v1")
        assert (greeting, db, secret_len) == ("review", "db", "64")
        _, addons = await world.call("GET", f"/apps/{app}/addons")
        assert [a["attachment"]["name"] for a in addons] == ["DATABASE"]
        database = seeded.removeprefix("seeded ")
        assert database.startswith(TEST_PREFIX)
        assert await database_exists(database)
        _, formation = await world.call("GET", f"/apps/{app}/formation")
        assert [(f["type"], f["idle_after"]) for f in formation] == [("web", 300.0)]
        # The agent runs it: at its review host, asleep after 5 idle minutes.
        config = world.up.agent.machines[app].config
        assert (config.policy.idle_after, config.policy.sleeps) == (300.0, True)
        assert f"pr-7.{DOMAIN}" in config.hosts

        # The build's output and the postdeploy's went to the logs service, for `slipway logs`.
        assert "-----> Python app detected" in await world.logs(app, "build")
        assert "[postdeploy]: seeding done" in await world.logs(app, "release")
        assert "-----> Released v" in await world.logs(app, "build")

        # The same delivery again (GitHub's retry): acknowledged, not applied twice.
        status, body = await world.deliver(opened, delivery=delivery)
        assert (status, body["status"]) == (202, "duplicate")
        _, builds = await world.call("GET", f"/apps/{app}/builds")
        assert len(builds) == 1

        # A push to the branch: a new build and release, the new code served, not re-seeded.
        second = commit(world.repo, app_files("v2", world.seed_file), "second")
        pushed = pull_request("synchronize", 7, head_sha=second, clone_url=str(world.repo))
        status, body = await world.deliver(pushed)
        assert (status, body["status"]) == (202, "accepted")
        await asyncio.wait_for(world.review.idle(), SETTLE)
        answer = await world.answers(host, "v2")
        assert answer[4] == seeded
        _, builds = await world.call("GET", f"/apps/{app}/builds")
        assert [(b["commit"], b["status"]) for b in builds] == [
            (first, "succeeded"),
            (second, "succeeded"),
        ]
        _, shown = await world.call("GET", f"/apps/{app}")
        assert shown["current_release"] == builds[1]["release"]["version"]

        # Closed: pr-predestroy runs, then the app, its database and its role are gone.
        closed = pull_request("closed", 7, head_sha=second, clone_url=str(world.repo))
        status, body = await world.deliver(closed)
        assert (status, body["status"]) == (202, "accepted")
        await asyncio.wait_for(world.review.idle(), SETTLE)
        assert Path(f"{world.seed_file}.destroyed").read_text() == "review"
        assert (await world.call("GET", f"/apps/{app}"))[0] == 404
        assert not await database_exists(database)
        assert not await role_exists(database)
        assert world.up.agent.machines.get(app) is None
        deadline = asyncio.get_running_loop().time() + SETTLE
        while (await world.through_router(host))[0] == 200:
            assert asyncio.get_running_loop().time() < deadline, "pr-7 still answers"
            await asyncio.sleep(0.1)
