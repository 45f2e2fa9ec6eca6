"""A Flask app with an RQ worker, written as for Heroku, deployed unchanged under ``slipway up``.

``tests/heroku/apps/flask_rq`` is the app: Flask and RQ pinned in
requirements.txt, a Procfile with ``web`` (gunicorn), ``worker`` (``rq worker
--url $REDIS_URL``) and a ``release`` phase; nothing in it knows slipway. Its
directory is uploaded and built by the local builder (pip, as Heroku's Python
build), confined as ``slipway up`` confines apps, given Heroku's Redis add-on
by name (``heroku-redis:mini``, a redis-server of its own), and checked only
through the router and Redis:

- a request enqueues a job, the worker runs it, the result comes back through
  the router;
- every process kind (web, worker, release, one-off) sees exactly Heroku's
  platform variables and the app's config vars;
- once the app sleeps, a job enqueued straight into Redis wakes the worker and
  gets done with no web request; the worker sleeps again after ``idle_after``.

Dependencies come from PyPI (the builder's pip, with the machine's pip config):
the first run downloads them, later runs use pip's cache.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from control.settings import BuildServerSettings
from control.up import Up
from kit.spawn import detect
from tests.agent.conftest import ListSink
from tests.control.conftest import ADMIN_TOKEN, up_settings
from tests.helpers import eventually

APP_DIR = Path(__file__).parent / "apps" / "flask_rq"
APP = "flaskrq"
HOST = f"{APP}.localhost"
#: A cold build downloads Flask, gunicorn, RQ and redis-py; a shared CPU makes pip slow.
BUILD_TIMEOUT = 300.0
#: Bound on a job's round trip, or on a process starting, on a busy machine.
SETTLE = 30.0
#: What every process of a built Python app has besides its config vars: Heroku's platform
#: variables, the slug's virtualenv (as Heroku's Python build sets it) and sh's PWD.
PLATFORM = {"PATH", "LANG", "TMPDIR", "HOME", "DYNO", "PWD", "VIRTUAL_ENV"}


class World:
    def __init__(self, up: Up, session: aiohttp.ClientSession, root: Path, sink: ListSink) -> None:
        assert up.control is not None
        self.sink = sink
        self.up = up
        self.session = session
        self.root = root
        self.api = f"http://127.0.0.1:{up.control.port}"
        self.router = f"http://127.0.0.1:{up.router.port}"

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        async with self.session.request(
            method, self.api + path, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as response:
            return response.status, await response.json()

    async def page(self, method: str, path: str) -> tuple[int, Any]:
        """Through the router, as a browser would (wakes the app if asleep)."""
        async with self.session.request(
            method, self.router + path, headers={"Host": HOST}
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except json.JSONDecodeError:
                return response.status, text

    async def job_result(self, job_id: str) -> Any:
        found: list[Any] = []

        async def finished() -> bool:
            status, body = await self.page("GET", f"/jobs/{job_id}")
            assert status == 200, body
            found[:] = [body]
            return bool(body["status"] == "finished")

        await eventually(finished, SETTLE, interval=0.2)
        return found[0]["result"]

    def build_lines(self) -> str:
        return "\n".join(
            f"{process}: {text}" for app, process, text in self.sink.lines if app == APP
        )

    def workers(self) -> int:
        return len(self.up.agent.status(APP)["processes"]["worker"]["instances"])


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = up_settings(
        tmp_path / "state",
        builds=BuildServerSettings(root=str(tmp_path / "builds"), timeout=BUILD_TIMEOUT),
    )
    sink = ListSink()
    # Confined as `slipway up` confines apps (bubblewrap, a uid per app as root).
    up = Up(settings, app_sink=sink, router_sink=sink, confiner=detect())
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    try:
        yield World(up, session, tmp_path, sink)
        assert not up.failed.is_set()
    finally:
        await session.close()
        await up.stop()


async def deploy(world: World) -> None:
    """apps:create, addons:create heroku-redis:mini, a build of the app's directory uploaded
    as a tarball (what `slipway builds:create DIR` sends; a confined build reads no host path).
    """
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w:gz") as tar:
        for path in sorted(APP_DIR.iterdir()):
            if path.is_file():
                tar.add(path, arcname=path.name)
    assert (await world.call("POST", "/apps", {"name": APP}))[0] == 201
    status, addon = await world.call("POST", f"/apps/{APP}/addons", {"plan": "heroku-redis:mini"})
    assert status == 201, addon
    async with world.session.post(
        f"{world.api}/apps/{APP}/builds",
        data=tarball.getvalue(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/gzip"},
    ) as response:
        status, build = response.status, await response.json()
    assert status == 201, build
    done: list[Any] = []

    async def built() -> bool:
        _, found = await world.call("GET", f"/apps/{APP}/builds/{build['id']}")
        done[:] = [found]
        return bool(found["status"] != "pending")

    await eventually(built, BUILD_TIMEOUT, interval=0.5)
    assert done[0]["status"] == "succeeded", world.build_lines()
    # The release reaches the router's table a moment after the build ends.
    await eventually(lambda: world.up.router.routes.table.resolve(HOST) is not None, SETTLE)


async def test_a_heroku_flask_rq_app_runs_unchanged(world: World) -> None:
    await deploy(world)
    _, config = await world.call("GET", f"/apps/{APP}/config-vars")
    assert set(config) == {"REDIS_URL"}

    status, body = await world.page("GET", "/")
    assert (status, body) == (200, "flask_rq is up\n"), world.build_lines()

    # A request enqueues, the worker runs it, the result comes back through the router.
    status, body = await world.page("POST", "/jobs/add/2/40")
    assert status == 202, body
    assert await world.job_result(body["id"]) == 42

    # Every process kind: exactly the platform's variables and the app's config vars.
    _, web = await world.page("GET", "/environment")
    assert set(web) - {"SERVER_SOFTWARE"} == PLATFORM | {"PORT", "REDIS_URL"}
    assert web["SERVER_SOFTWARE"].startswith("gunicorn/")  # gunicorn's own, set in-process
    assert web["DYNO"] == "web.1"
    _, body = await world.page("POST", "/jobs/environment")
    worker = await world.job_result(body["id"])
    rq_own = {"RQ_JOB_ID", "RQ_WORKER_ID"}  # RQ sets them in the process running the job
    assert set(worker) - rq_own == PLATFORM | {"REDIS_URL"}
    assert worker["RQ_JOB_ID"] == body["id"]
    assert worker["DYNO"] == "worker.1"
    _, release = await world.page("GET", "/environment/release")
    assert set(release) == PLATFORM | {"REDIS_URL"}
    assert release["DYNO"] == "release.1"
    assert world.up.control is not None
    once = await world.up.control.control.run_once(APP, "env", reason="test", actor="test")
    assert once.ok, once.output
    assert {line.split("=", 1)[0] for line in once.output.splitlines()} == PLATFORM | {"REDIS_URL"}


async def test_a_job_queued_while_the_app_sleeps_wakes_the_worker_without_a_request(
    world: World,
) -> None:
    await deploy(world)
    status, _ = await world.call("PATCH", f"/apps/{APP}/formation/web", {"idle_after": 1})
    assert status == 200
    assert (await world.page("GET", "/"))[0] == 200  # up once, then left alone

    await eventually(lambda: world.up.agent.status(APP)["state"] == "asleep", SETTLE)
    await eventually(lambda: world.workers() == 0, SETTLE)

    # Enqueued with RQ itself, from the built slug's own virtualenv: no web process involved.
    [python] = list((world.root / "builds").glob("**/.venv/bin/python"))[:1]
    slug_app = python.parent.parent.parent / "app"
    _, config = await world.call("GET", f"/apps/{APP}/config-vars")
    script = (
        "import sys, tasks; from redis import Redis; from rq import Queue; "
        "print(Queue(connection=Redis.from_url(sys.argv[1])).enqueue(tasks.add, 20, 22).id)"
    )
    enqueued = await asyncio.to_thread(
        subprocess.run,
        [str(python), "-c", script, config["REDIS_URL"]],
        cwd=slug_app,
        capture_output=True,
        text=True,
        timeout=SETTLE,
        check=True,
    )
    job_id = enqueued.stdout.strip()

    redis = aioredis.Redis.from_url(config["REDIS_URL"])
    try:

        async def done() -> bool:
            return await redis.hget(f"rq:job:{job_id}", "status") == b"finished"

        await eventually(done, SETTLE, interval=0.1)
    finally:
        await redis.aclose()
    assert world.up.agent.status(APP)["state"] == "asleep"  # web never woke
    await eventually(lambda: world.workers() == 0, SETTLE)  # and the worker sleeps again
    assert await world.job_result(job_id) == 42  # the result, through the router


def test_the_app_knows_nothing_of_slipway() -> None:
    """The app's files are what a Heroku user writes: no slipway name in any of them."""
    for path in APP_DIR.iterdir():
        assert "slipway" not in path.read_text().lower(), path
