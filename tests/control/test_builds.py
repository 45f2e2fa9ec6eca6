"""POST /apps/{app}/builds: pending at once, then a slug from the local builder and a release.

A real LocalBuilder on real git repositories made here (no dependencies to
install, so no index is needed); the release target records deployments and
runs the release phase for real.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from control.api.app import build_app
from control.building import Builds
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.model import Source
from control.builds.settings import BuildSettings
from control.errors import NotFound
from control.models import BuildStatus
from control.releasing import run_release_command, slug_layout
from control.service import Control
from control.store.db import Store
from tests.builds.apps import RecordingSink, commit, python_app
from tests.conftest import free_port
from tests.control.conftest import ADMIN_TOKEN
from tests.control.targets import RecordingTarget

LOGS_URL = "http://logs.example:8082"
#: Bound on one build of an app without dependencies (git, venv) on a shared machine.
BUILD_WAIT = 30.0


@dataclass
class BuildApi:
    base: str
    session: aiohttp.ClientSession
    control: Control
    builds: Builds
    target: RecordingTarget
    sink: RecordingSink

    async def call(
        self, method: str, path: str, body: Any = None, *, data: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with self.session.request(
            method, self.base + path, json=body, data=data, headers=headers
        ) as response:
            return response.status, await response.json()

    async def finished(self, app: str, build_id: str) -> dict[str, Any]:
        async with asyncio.timeout(BUILD_WAIT):
            await self.builds.wait(app, build_id)
        status, build = await self.call("GET", f"/apps/{app}/builds/{build_id}")
        assert status == 200
        assert isinstance(build, dict)
        return build


async def _start(
    db: str, root: Path, *, builder: bool = True
) -> tuple[Control, Builds, web.AppRunner, int, RecordingSink, RecordingTarget]:
    sink = RecordingSink()
    target = RecordingTarget()
    control = Control(store=Store.open(db), target=target)
    await control.start(bootstrap_admin_token=ADMIN_TOKEN)
    local = LocalBuilder(
        BuildSettings(root=root, pip_args=("--no-index",), timeout=BUILD_WAIT),
        sink=sink,
        metrics=BuildMetrics(CollectorRegistry()),
    )
    builds = Builds(
        control,
        builder=local if builder else None,
        sink=sink,
        logs_url=LOGS_URL,
        uploads=root / "uploads",
    )
    runner = web.AppRunner(
        build_app(control, registry=CollectorRegistry(), ready=lambda: None, builds=builds)
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return control, builds, runner, port, sink, target


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[BuildApi]:
    control, builds, runner, port, sink, target = await _start(
        f"sqlite+aiosqlite:///{tmp_path}/state.db", tmp_path / "builds"
    )
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield BuildApi(f"http://127.0.0.1:{port}", session, control, builds, target, sink)
    finally:
        await session.close()
        await builds.close()
        await runner.cleanup()
        await control.store.close()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "repo"


async def create_build(api: BuildApi, repo: Path, sha: str) -> dict[str, Any]:
    status, build = await api.call(
        "POST", "/apps/shop/builds", {"source_blob": {"url": str(repo), "version": sha}}
    )
    assert status == 201, build
    assert isinstance(build, dict)
    return build


class TestABuildFromGit:
    async def test_it_answers_pending_at_once_then_succeeds_and_releases_the_slug(
        self, api: BuildApi, repo: Path
    ) -> None:
        sha = commit(repo, python_app(deps=False))
        await api.call("POST", "/apps", {"name": "shop"})
        build = await create_build(api, repo, sha)
        assert build["status"] == "pending"
        assert build["release"] is None
        assert build["output_stream_url"] == (
            f"{LOGS_URL}/apps/shop/logs?source=build&process=build.{build['id']}&tail=1"
        )
        assert build["source_blob"] == {"url": str(repo), "version": sha}

        done = await api.finished("shop", build["id"])
        assert done["status"] == "succeeded"
        assert done["commit"] == sha
        assert done["procfile"] == {"web": "python app.py", "worker": "python worker.py"}
        assert done["release"] == {"version": 2, "status": "succeeded"}
        assert done["digest"].startswith("sha256:")
        slug = Path(done["artifact"])
        assert (slug / "app" / "Procfile").is_file()

        deployed = api.target.deployments[-1]
        assert (deployed.version, deployed.artifact) == (2, str(slug))
        assert dict(deployed.processes) == done["procfile"]
        _, app = await api.call("GET", "/apps/shop")
        assert app["current_release"] == 2
        _, release = await api.call("GET", "/apps/shop/releases/2")
        assert release["description"] == f"Deploy {sha[:7]}"
        texts = api.sink.texts("shop")
        assert "-----> Python app detected" in texts
        assert "-----> Released v2" in texts
        assert {line[1] for line in api.sink.lines} == {"build"}

        _, listed = await api.call("GET", "/apps/shop/builds")
        assert [b["id"] for b in listed] == [build["id"]]
        _, audit = await api.call("GET", "/apps/shop/audit")
        actions = [e["action"] for e in audit]
        # The build finishes once its release is made: whoever follows the build (builds:create)
        # sees the release phase's output before it stops being pending.
        assert actions[actions.index("build.create") :] == [
            "build.create", "release.create", "build.finish",
        ]  # fmt: skip

    async def test_a_failed_build_leaves_the_running_release_untouched(
        self, api: BuildApi, repo: Path
    ) -> None:
        good = commit(repo, python_app(deps=False))
        await api.call("POST", "/apps", {"name": "shop"})
        first = await create_build(api, repo, good)
        await api.finished("shop", first["id"])
        deployed = len(api.target.deployments)
        bad = commit(repo, {"Procfile": "web python app.py\n"}, "break the Procfile")
        second = await create_build(api, repo, bad)
        done = await api.finished("shop", second["id"])
        assert done["status"] == "failed"
        assert "Procfile line 1" in done["output"]
        assert done["release"] is None
        assert len(api.target.deployments) == deployed
        _, app = await api.call("GET", "/apps/shop")
        assert app["current_release"] == 2

    async def test_an_unknown_commit_fails_the_build_not_the_request(
        self, api: BuildApi, repo: Path
    ) -> None:
        commit(repo, python_app(deps=False))
        await api.call("POST", "/apps", {"name": "shop"})
        build = await create_build(api, repo, "0" * 40)
        done = await api.finished("shop", build["id"])
        assert done["status"] == "failed"
        assert "cannot fetch commit" in done["output"]

    async def test_a_failing_release_phase_marks_the_build_s_release_failed(
        self, api: BuildApi, repo: Path
    ) -> None:
        files = python_app(deps=False, procfile="web: python app.py\nrelease: exit 3\n")
        sha = commit(repo, files)
        await api.call("POST", "/apps", {"name": "shop"})
        build = await create_build(api, repo, sha)
        done = await api.finished("shop", build["id"])
        assert done["status"] == "succeeded"
        assert done["release"] == {"version": 2, "status": "failed"}
        assert api.target.deployments == []
        _, app = await api.call("GET", "/apps/shop")
        assert app["current_release"] == 1


class TestSlugs:
    async def test_a_slug_runs_with_its_own_virtualenv_first_on_path(
        self, tmp_path: Path, repo: Path
    ) -> None:
        """The dependency is installed only in the slug's venv, yet ``python app.py`` finds it."""
        sha = commit(repo, python_app())
        builder = LocalBuilder(
            BuildSettings(root=tmp_path / "b", pip_args=("--no-index",), timeout=BUILD_WAIT),
            sink=RecordingSink(),
            metrics=BuildMetrics(CollectorRegistry()),
        )
        artifact = await builder.build("shop", Source.git(str(repo), sha))
        cwd, env = slug_layout(str(artifact.slug))
        assert cwd == str(artifact.slug / "app")
        assert env["VIRTUAL_ENV"] == str(artifact.slug / ".venv")
        result = await run_release_command(
            artifact.process_types["web"], cwd=cwd, env=env, timeout=BUILD_WAIT
        )
        assert (result.ok, result.output.strip()) == (True, "tinydep 1.0")

    def test_a_plain_directory_runs_as_it_is(self, tmp_path: Path) -> None:
        assert slug_layout(str(tmp_path)) == (str(tmp_path), {})
        assert slug_layout(None) == (None, {})


class TestOtherSources:
    async def test_an_uploaded_tarball_is_built_and_released(
        self, api: BuildApi, tmp_path: Path
    ) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, content in python_app(deps=False).items():
                data = content.encode() if isinstance(content, str) else content
                info = tarfile.TarInfo(f"shop-main/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        await api.call("POST", "/apps", {"name": "shop"})
        status, build = await api.call(
            "POST", "/apps/shop/builds", data=buffer.getvalue(), content_type="application/gzip"
        )
        assert status == 201, build
        done = await api.finished("shop", build["id"])
        assert (done["status"], done["commit"]) == ("succeeded", None)
        assert done["release"] == {"version": 2, "status": "succeeded"}
        assert list((tmp_path / "builds" / "uploads").iterdir()) == []  # the upload is removed

    async def test_a_tarball_path_that_is_no_file_fails_the_build(self, api: BuildApi) -> None:
        await api.call("POST", "/apps", {"name": "shop"})
        status, build = await api.call(
            "POST", "/apps/shop/builds", {"source_blob": {"url": "/nowhere/app.tar.gz"}}
        )
        assert status == 201
        done = await api.finished("shop", build["id"])
        assert done["status"] == "failed"
        assert "cannot unpack" in done["output"]


class TestRefusals:
    @pytest.mark.parametrize(
        ("blob", "status", "ident"),
        [
            ({"url": "https://example.com/x.git"}, 422, "invalid_source"),
            ({"url": "https://example.com/x.git", "version": "main"}, 422, "invalid_source"),
            ({"url": "", "version": "abcdef0"}, 422, "invalid_source"),
            ({"url": "x.git", "version": "abcdef0", "ref": "main"}, 422, "unknown_fields"),
        ],
    )
    async def test_a_source_blob_without_a_commit_sha_is_refused(
        self, api: BuildApi, blob: dict[str, str], status: int, ident: str
    ) -> None:
        await api.call("POST", "/apps", {"name": "shop"})
        got, error = await api.call("POST", "/apps/shop/builds", {"source_blob": blob})
        assert (got, error["id"]) == (status, ident)

    async def test_only_an_admin_may_build_from_a_path_on_the_control_plane(
        self, api: BuildApi, repo: Path
    ) -> None:
        sha = commit(repo, python_app(deps=False))
        await api.call("POST", "/apps", {"name": "shop"})
        _, secret = await api.control.create_token(name="ci", admin=False, app="shop", actor="test")
        for url in (str(repo), f"file://{repo}", "/srv/other-app.tar.gz"):
            async with api.session.post(
                f"{api.base}/apps/shop/builds",
                json={"source_blob": {"url": url, "version": sha}},
                headers={"Authorization": f"Bearer {secret}"},
            ) as response:
                assert (response.status, (await response.json())["id"]) == (403, "forbidden")

    async def test_git_transports_that_run_commands_are_refused(
        self, api: BuildApi, tmp_path: Path
    ) -> None:
        marker = tmp_path / "pwned"
        await api.call("POST", "/apps", {"name": "shop"})
        status, error = await api.call(
            "POST",
            "/apps/shop/builds",
            {"source_blob": {"url": f"ext::sh -c touch% {marker}", "version": "abcdef0"}},
        )
        assert (status, error["id"]) == (422, "invalid_source")  # refused, even to an admin
        assert not marker.exists()

    async def test_a_source_url_longer_than_its_column_is_refused_before_storing(
        self, api: BuildApi
    ) -> None:
        """PostgreSQL would refuse 1,001 characters in source_url: a 503 that blames us."""
        await api.call("POST", "/apps", {"name": "shop"})
        url = "https://git.example.com/" + "r" * 1000 + ".git"
        status, error = await api.call(
            "POST", "/apps/shop/builds", {"source_blob": {"url": url, "version": "abcdef0"}}
        )
        assert (status, error["id"]) == (422, "invalid_source")
        assert "at most 1000" in error["message"]
        assert (await api.call("GET", "/apps/shop/builds"))[1] == []

    async def test_an_unknown_app_and_build_are_404(self, api: BuildApi) -> None:
        got, error = await api.call(
            "POST", "/apps/ghost/builds", {"source_blob": {"url": "x", "version": "abcdef0"}}
        )
        assert (got, error["id"]) == (404, "app_not_found")
        await api.call("POST", "/apps", {"name": "shop"})
        got, error = await api.call("GET", "/apps/shop/builds/nope")
        assert (got, error["id"]) == (404, "build_not_found")

    async def test_without_a_builder_creating_is_refused_and_listing_works(
        self, tmp_path: Path
    ) -> None:
        control, _, runner, port, _, _ = await _start(
            f"sqlite+aiosqlite:///{tmp_path}/state.db", tmp_path / "b", builder=False
        )
        try:
            async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ) as session:
                base = f"http://127.0.0.1:{port}"
                await session.post(f"{base}/apps", json={"name": "shop"})
                blob = {"source_blob": {"url": "x", "version": "abcdef0"}}
                async with session.post(f"{base}/apps/shop/builds", json=blob) as response:
                    assert response.status == 409
                    assert (await response.json())["id"] == "builds_unavailable"
                async with session.get(f"{base}/apps/shop/builds") as response:
                    assert (response.status, await response.json()) == (200, [])
        finally:
            await runner.cleanup()
            await control.store.close()


class TestACrash:
    async def test_builds_pending_at_a_crash_are_failed_at_start(self, tmp_path: Path) -> None:
        db = f"sqlite+aiosqlite:///{tmp_path}/state.db"
        store = Store.open(db)
        control = Control(store=store, target=RecordingTarget())
        await control.start(bootstrap_admin_token=ADMIN_TOKEN)
        await control.create_app("shop", actor="me")
        async with store.tx() as tx:
            await tx.add_build(
                await tx.get_app("shop"), build_id="abc123", source_url="x",
                source_version="abcdef0", actor="me", now=1.0,
            )  # fmt: skip
        await store.close()

        store = Store.open(db)
        control = Control(store=store, target=RecordingTarget())
        try:
            await control.start()
            async with store.tx(write=False) as tx:
                build = await tx.get_build(await tx.get_app("shop"), "abc123")
            assert (build.status, build.output) == (
                BuildStatus.FAILED,
                "interrupted: the control plane stopped",
            )
        finally:
            await store.close()


class HeldBuilder:
    """A builder that waits to be let go, then fails as told (the seam, for races)."""

    def __init__(self, error: Exception) -> None:
        self.go = asyncio.Event()
        self.error = error

    async def build(self, app: str, source: Source, *, build_id: str | None = None) -> Any:
        await self.go.wait()
        raise self.error


class TestRaces:
    async def test_an_app_deleted_while_it_builds_leaves_nothing_behind(
        self, tmp_path: Path
    ) -> None:
        store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
        control = Control(store=store, target=RecordingTarget())
        await control.start()
        held = HeldBuilder(OSError("disk gone"))
        builds = Builds(control, builder=held, sink=RecordingSink())
        try:
            await control.create_app("shop", actor="me")
            build = await builds.create(
                "shop", {"url": "x.git", "version": "abcdef0"}, actor="me", tenant=False
            )
            await control.delete_app("shop", actor="me")
            held.go.set()
            # The task ends quietly; the build went with its app.
            async with asyncio.timeout(5):
                with pytest.raises(NotFound):
                    await builds.wait("shop", build.id)
        finally:
            await builds.close()
            await store.close()

    async def test_a_builder_bug_fails_the_build_instead_of_leaving_it_pending(
        self, tmp_path: Path
    ) -> None:
        store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
        control = Control(store=store, target=RecordingTarget())
        await control.start()
        held = HeldBuilder(KeyError("oops"))
        builds = Builds(control, builder=held, sink=RecordingSink())
        try:
            await control.create_app("shop", actor="me")
            build = await builds.create(
                "shop", {"url": "x.git", "version": "abcdef0"}, actor="me", tenant=False
            )
            held.go.set()
            async with asyncio.timeout(5):
                done = await builds.wait("shop", build.id)
            assert (done.status, done.output) == (BuildStatus.FAILED, "internal error: 'oops'")
        finally:
            await builds.close()
            await store.close()


@pytest.mark.parametrize(
    "url", ["/etc", "file:///etc/passwd", "../builds/cache/other/repo.git", "file://localhost/"]
)
async def test_an_app_token_may_name_no_path_on_this_machine(
    api: BuildApi, repo: Path, url: str
) -> None:
    """Under `slipway up` a local path is read outside the sandbox: an app token, which may
    act on its own app only, must never get there (another app's files, /etc)."""
    await api.call("POST", "/apps", {"name": "shop"})
    _, made = await api.call("POST", "/tokens", {"name": "ci", "app": "shop"})
    headers = {"Authorization": f"Bearer {made['token']}"}
    body = {"source_blob": {"url": url, "version": "a" * 40}}
    async with api.session.post(f"{api.base}/apps/shop/builds", json=body, headers=headers) as r:
        status, answer = r.status, await r.json()
    assert status == 403, answer
    assert "needs an admin token" in answer["message"]
    assert "https://" in answer["message"]  # what an app token may name instead
    _, builds = await api.call("GET", "/apps/shop/builds")
    assert builds == []  # refused before any build (or git) started
