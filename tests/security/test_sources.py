"""What an app token can name: no git option, no remote helper, no host path; no credential shown.

Each attack is sent the way an attacker would: an app token (one app's) against
the real control API on loopback, with a real LocalBuilder running real git.
The issue is #18 (tenancy), items 1, 2 (the artifact) and 8 (URL credentials).
"""

from __future__ import annotations

import asyncio
import logging
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
from control.builds.settings import BuildSettings
from control.client import CliError
from control.commands import resolve_ref, source_tarball
from control.service import Control
from control.store.db import Store
from control.store.schema import audit
from kit.logfmt import LogfmtFormatter
from tests.builds.apps import RecordingSink, commit, python_app
from tests.conftest import free_port
from tests.control.conftest import ADMIN_TOKEN
from tests.control.targets import RecordingTarget

#: Bound on one build of an app without dependencies (git, venv) on a shared machine.
BUILD_WAIT = 30.0
SHA = "0123456789abcdef0123456789abcdef01234567"
#: The credentials the masking tests hide: distinctive, so no other text contains them.
PASSWORD = "s3cr3t-pw-77"
ACCESS_TOKEN = "tok-9f8e7d6c"
SLIPWAY_PACKAGES = {"kit", "control", "agent", "logs", "router", "exporters"}


@dataclass
class Platform:
    base: str
    session: aiohttp.ClientSession
    control: Control
    builds: Builds
    target: RecordingTarget
    sink: RecordingSink
    app_token: str
    root: Path

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.app_token}"}
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as response:
            return response.status, await response.json()

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.call(method, path, body, token=ADMIN_TOKEN)

    async def finished(self, build_id: str) -> dict[str, Any]:
        async with asyncio.timeout(BUILD_WAIT):
            await self.builds.wait("shop", build_id)
        status, build = await self.call("GET", f"/apps/shop/builds/{build_id}")
        assert status == 200
        assert isinstance(build, dict)
        return build


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    sink = RecordingSink()
    target = RecordingTarget()
    control = Control(store=Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db"), target=target)
    await control.start(bootstrap_admin_token=ADMIN_TOKEN)
    builder = LocalBuilder(
        BuildSettings(root=tmp_path / "builds", pip_args=("--no-index",), timeout=BUILD_WAIT),
        sink=sink,
        metrics=BuildMetrics(CollectorRegistry()),
    )
    builds = Builds(control, builder=builder, sink=sink, uploads=tmp_path / "uploads")
    runner = web.AppRunner(
        build_app(control, registry=CollectorRegistry(), ready=lambda: None, builds=builds)
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await control.create_app("shop", actor="test")
    _, secret = await control.create_token(name="ci", admin=False, app="shop", actor="test")
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield Platform(
            f"http://127.0.0.1:{port}", session, control, builds, target, sink, secret, tmp_path
        )
    finally:
        await session.close()
        await builds.close()
        await runner.cleanup()
        await control.store.close()


class TestGitOptionsAndTransports:
    async def test_an_upload_pack_option_as_the_url_is_refused_and_runs_nothing(
        self, platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Attack: source_blob.url '--upload-pack=:;touch pwned.txt;' so git fetch runs it."""
        monkeypatch.chdir(tmp_path)
        marker = tmp_path / "pwned.txt"
        for url in ("--upload-pack=:;id>pwned.txt;", f"--upload-pack=:;touch {marker};"):
            status, error = await platform.call(
                "POST", "/apps/shop/builds", {"source_blob": {"url": url, "version": SHA}}
            )
            assert (status, error["id"]) == (422, "invalid_source")
            assert "option" in error["message"]
        assert not marker.exists()
        assert list(tmp_path.rglob("pwned.txt")) == []
        assert await platform.call("GET", "/apps/shop/builds") == (200, [])

    @pytest.mark.parametrize(
        ("url", "version", "status"),
        [
            ("ext::sh -c touch% {marker}", SHA, 422),
            ("fd::3", SHA, 422),
            ("-c core.sshCommand=touch {marker}", SHA, 422),
            ("ssh://-oProxyCommand=touch%20{marker}/r.git", SHA, 422),
            ("git@-oProxyCommand=touch:r.git", SHA, 422),
            ("https://example.com/r.git", "--foo", 422),
            ("https://example.com/r.git", "-c", 422),
            ("https://example.com/app.tar.gz", None, 422),
            ("file:///etc", SHA, 403),
            ("/etc", SHA, 403),
            ("../x", SHA, 403),
            ("/srv/other-app.tar.gz", None, 403),
            ("http://127.0.0.1:9/r.git", SHA, 403),
            ("git://127.0.0.1:9/r.git", SHA, 403),
        ],
    )
    async def test_helpers_host_paths_and_option_versions_are_refused_to_an_app_token(
        self, platform: Platform, tmp_path: Path, url: str, version: str | None, status: int
    ) -> None:
        """Attack: a remote helper that runs a command, a path on the control plane's disk,
        an ssh option as host, or a version git would take for an option."""
        marker = tmp_path / "pwned"
        blob = {"url": url.format(marker=marker), "version": version}
        got, error = await platform.call("POST", "/apps/shop/builds", {"source_blob": blob})
        assert got == status, error
        assert error["id"] == ("forbidden" if status == 403 else "invalid_source")
        assert not marker.exists()
        assert await platform.call("GET", "/apps/shop/builds") == (200, [])

    async def test_an_admin_is_refused_options_and_helpers_too(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        marker = tmp_path / "pwned"
        for url in (f"--upload-pack=touch {marker}", f"ext::sh -c touch% {marker}"):
            status, error = await platform.admin(
                "POST", "/apps/shop/builds", {"source_blob": {"url": url, "version": SHA}}
            )
            assert (status, error["id"]) == (422, "invalid_source")
        assert not marker.exists()

    async def test_an_admin_still_builds_from_a_path_on_this_machine(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        repo = tmp_path / "repo"
        sha = commit(repo, python_app(deps=False))
        status, build = await platform.admin(
            "POST", "/apps/shop/builds", {"source_blob": {"url": str(repo), "version": sha}}
        )
        assert status == 201, build
        done = await platform.finished(build["id"])
        assert (done["status"], done["commit"]) == ("succeeded", sha)
        assert done["release"] == {"version": 2, "status": "succeeded"}

    async def test_an_uploaded_tarball_builds_and_its_build_names_no_host_path(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        """Attack (reconnaissance): learn where the control plane keeps its state from an
        upload's source_blob, to aim a host path at it."""
        source = tmp_path / "src"
        for name, content in python_app(deps=False).items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_text(str(content))
        headers = {
            "Authorization": f"Bearer {platform.app_token}",
            "Content-Type": "application/gzip",
        }
        async with platform.session.post(
            f"{platform.base}/apps/shop/builds", data=source_tarball(source), headers=headers
        ) as response:
            assert response.status == 201
            build = await response.json()
        done = await platform.finished(build["id"])
        assert done["status"] == "succeeded"
        assert done["source_blob"]["url"].startswith("upload:")
        _, audit = await platform.call("GET", "/apps/shop/audit")
        [created] = [e for e in audit if e["action"] == "build.create"]
        for text in (str(build["source_blob"]), str(done["source_blob"]), str(created)):
            assert str(platform.root) not in text


class TestReleaseArtifacts:
    async def test_an_app_token_cannot_release_a_host_path_to_read_the_admin_token(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        """Attack: POST /releases with artifact=<state dir> and release: 'cat token', to get
        the admin token back in the release output."""
        state = tmp_path / "state"
        state.mkdir()
        (state / "token").write_text(ADMIN_TOKEN)
        body = {"artifact": str(state), "procfile": {"web": "sleep 1", "release": "cat token"}}
        status, error = await platform.call("POST", "/apps/shop/releases", body)
        assert (status, error["id"]) == (403, "forbidden")
        assert ADMIN_TOKEN not in str(error)
        _, releases = await platform.call("GET", "/apps/shop/releases")
        assert [r["version"] for r in releases] == [1]
        assert platform.target.deployments == []

    @pytest.mark.parametrize("artifact", ["/", "/etc", "../..", "state", "file:///etc"])
    async def test_no_host_path_is_an_artifact_an_app_token_may_name(
        self, platform: Platform, artifact: str
    ) -> None:
        """Attack: any path on the control plane's machine as a release's artifact."""
        body = {"artifact": artifact, "procfile": {"web": "sleep 1"}}
        status, error = await platform.call("POST", "/apps/shop/releases", body)
        assert (status, error["id"]) == (403, "forbidden")
        assert platform.target.deployments == []

    async def test_an_app_token_may_release_again_what_its_own_build_made(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        repo = tmp_path / "repo"
        sha = commit(repo, python_app(deps=False))
        _, build = await platform.admin(
            "POST", "/apps/shop/builds", {"source_blob": {"url": str(repo), "version": sha}}
        )
        slug = (await platform.finished(build["id"]))["artifact"]
        body = {"artifact": slug, "procfile": {"web": "python app.py"}}
        status, release = await platform.call("POST", "/apps/shop/releases", body)
        assert status == 201, release
        assert (release["version"], release["artifact"]) == (3, slug)

    async def test_an_admin_may_still_release_a_directory(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        body = {"artifact": str(tmp_path), "procfile": {"web": "sleep 1"}}
        status, release = await platform.admin("POST", "/apps/shop/releases", body)
        assert status == 201, release
        assert platform.target.deployments[-1].artifact == str(tmp_path)


def _refusing_server(status: int) -> web.Application:
    async def refuse(request: web.Request) -> web.Response:
        headers = {"WWW-Authenticate": 'Basic realm="git"'} if status == 401 else {}
        return web.Response(status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    return app


@pytest.fixture
async def git_server(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    """A git HTTP server that answers every request with ``request.param`` (401 or 404)."""
    runner = web.AppRunner(_refusing_server(request.param))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


class TestCredentialsInSourceUrls:
    @pytest.mark.parametrize(
        ("git_server", "scheme", "admin", "git_says"),
        [
            # An app token may name https only: against this plain-HTTP server, git fails
            # the TLS handshake and prints the URL, query string and all.
            (401, "https", False, "unable to access"),
            (401, "http", True, "Authentication failed"),
            (404, "http", True, "not found"),
        ],
        indirect=["git_server"],
    )
    async def test_no_password_or_access_token_is_shown_anywhere(
        self,
        platform: Platform,
        git_server: int,
        scheme: str,
        admin: bool,
        git_says: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Attack (on a tenant, by whoever reads the output): a source URL carrying
        user:password and ?access_token= fails to fetch; git's error text names the URL."""
        caplog.set_level(logging.INFO)
        url = (
            f"{scheme}://user:{PASSWORD}@127.0.0.1:{git_server}/repo.git"
            f"?access_token={ACCESS_TOKEN}"
        )
        blob = {"source_blob": {"url": url, "version": SHA}}
        call = platform.admin if admin else platform.call
        status, build = await call("POST", "/apps/shop/builds", blob)
        assert status == 201, build
        done = await platform.finished(build["id"])
        assert done["status"] == "failed"

        output = "\n".join(platform.sink.texts("shop"))
        assert git_says in output  # git's own stderr is there, masked
        assert f"127.0.0.1:{git_server}/repo.git?access_token=***" in output
        _, listed = await platform.call("GET", "/apps/shop/builds")
        _, audit = await platform.call("GET", "/apps/shop/audit")
        async with platform.control.store.tx(write=False) as tx:
            at_rest = await tx.get_build(await tx.get_app("shop"), build["id"])
        formatter = LogfmtFormatter()
        # slipway's own lines (the fake git server's access log is not ours).
        ours = [r for r in caplog.records if r.name.split(".")[0] in SLIPWAY_PACKAGES]
        logged = "\n".join(formatter.format(record) for record in ours)
        for where, text in {
            "build output": output,
            "API (create)": str(build),
            "API (show)": str(done),
            "API (list)": str(listed),
            "audit log": str(audit),
            "build row": f"{at_rest.source_url} {at_rest.output}",
            "log lines": logged,
        }.items():
            assert PASSWORD not in text, where
            assert ACCESS_TOKEN not in text, where
        assert done["source_blob"]["url"] == (
            f"{scheme}://***@127.0.0.1:{git_server}/repo.git?access_token=***"
        )
        assert any(e["detail"].get("source") == done["source_blob"]["url"] for e in audit)

    async def test_a_refusal_quoting_the_url_masks_its_credentials(
        self, platform: Platform
    ) -> None:
        """Attack (on a tenant): a refused URL's credentials echoed into an error body that
        proxies and clients log."""
        url = f"https://user:{PASSWORD}@127.0.0.1:99999999/r.git?access_token={ACCESS_TOKEN}"
        status, error = await platform.call(
            "POST", "/apps/shop/builds", {"source_blob": {"url": url, "version": SHA}}
        )
        assert (status, error["id"]) == (422, "invalid_source")
        assert "invalid port" in error["message"]
        assert PASSWORD not in error["message"]
        assert ACCESS_TOKEN not in error["message"]

    async def test_old_audit_entries_and_build_rows_are_masked_when_shown(
        self, platform: Platform
    ) -> None:
        """Attack (on a tenant): rows written before masking existed, read back through the
        API."""
        url = f"https://user:{PASSWORD}@git.example/r.git?access_token={ACCESS_TOKEN}"
        async with platform.control.store.tx() as tx:
            app = await tx.get_app("shop")
            await tx.conn.execute(
                audit.insert().values(
                    at=1.0, actor="old", action="build.create", app="shop", detail={"source": url}
                )
            )
            await tx.add_build(
                app, build_id="old1", source_url=url, source_version=SHA, actor="old", now=1.0
            )
        _, entries = await platform.call("GET", "/apps/shop/audit")
        _, build = await platform.call("GET", "/apps/shop/builds/old1")
        for text in (str(entries), str(build)):
            assert PASSWORD not in text
            assert ACCESS_TOKEN not in text
        masked = "https://***@git.example/r.git?access_token=***"
        assert entries[-1]["detail"] == {"source": masked}
        assert build["source_blob"]["url"] == masked


class TestTheCliResolvingARef:
    def test_a_url_that_is_an_option_runs_nothing_on_the_users_machine(
        self, tmp_path: Path
    ) -> None:
        """Attack: a shared snippet 'slipway builds:create --git --upload-pack=CMD --ref main'."""
        marker = tmp_path / "pwned"
        with pytest.raises(CliError):
            resolve_ref(f"--upload-pack=touch {marker}", "main")
        assert not marker.exists()

    def test_its_error_shows_no_credentials(self, unused_port: int) -> None:
        url = f"http://user:{PASSWORD}@127.0.0.1:{unused_port}/r.git?token={ACCESS_TOKEN}"
        with pytest.raises(CliError) as caught:
            resolve_ref(url, "main")
        assert PASSWORD not in str(caught.value)
        assert ACCESS_TOKEN not in str(caught.value)
