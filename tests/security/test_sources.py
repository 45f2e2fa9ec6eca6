"""What an app token can name: no git option, no remote helper, no host path, no host inside
the platform's network; no credential shown.

Each attack is sent the way an attacker would: an app token (one app's) against
the real control API on loopback, with a real LocalBuilder running real git.
The issue is #18 (tenancy), items 1, 2 (the artifact) and 8 (URL credentials), and
the shared loopback (a source URL pointed inward: SSRF).

Long because: every attack on a source URL is here, against one platform fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from control.addons.kube_tls import server_certificate
from control.api.app import build_app
from control.building import Builds
from control.builds.egress import Egress, parse_allow
from control.builds.errors import SourceError
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.settings import BuildSettings
from control.builds.sources import check_branch
from control.client import CliError
from control.commands import resolve_ref, source_tarball
from control.errors import ApiError, Forbidden, Unprocessable
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


@contextlib.asynccontextmanager
async def running_platform(
    root: Path,
    *,
    submit: Egress | None = None,
    fetch: Egress | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Platform]:
    """The control API with a LocalBuilder; ``submit`` is what the API lets a tenant name,
    ``fetch`` what the builder lets it fetch (both refuse every inward address unless told)."""
    sink = RecordingSink()
    target = RecordingTarget()
    control = Control(store=Store.open(f"sqlite+aiosqlite:///{root}/state.db"), target=target)
    await control.start(bootstrap_admin_token=ADMIN_TOKEN)
    builder = LocalBuilder(
        BuildSettings(
            root=root / "builds",
            pip_args=("--no-index",),
            timeout=BUILD_WAIT,
            env=env or {},
            egress=fetch or Egress(),
        ),
        sink=sink,
        metrics=BuildMetrics(CollectorRegistry()),
    )
    builds = Builds(control, builder=builder, sink=sink, uploads=root / "uploads", egress=submit)
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
            f"http://127.0.0.1:{port}", session, control, builds, target, sink, secret, root
        )
    finally:
        await session.close()
        await builds.close()
        await runner.cleanup()
        await control.store.close()


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path) as running:
        yield running


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


@pytest.fixture
async def git_platform(tmp_path: Path, git_server: int) -> AsyncIterator[Platform]:
    """The platform, letting tenants fetch from ``git_server`` (on loopback) and nothing
    else inward: the operator's allow-list (SLIPWAY_SOURCES_ALLOW=127.0.0.1:PORT)."""
    allowed = Egress(allow=parse_allow(f"127.0.0.1:{git_server}"))
    async with running_platform(tmp_path, submit=allowed, fetch=allowed) as running:
        yield running


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
        git_platform: Platform,
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
        call = git_platform.admin if admin else git_platform.call
        status, build = await call("POST", "/apps/shop/builds", blob)
        assert status == 201, build
        done = await git_platform.finished(build["id"])
        assert done["status"] == "failed"

        output = "\n".join(git_platform.sink.texts("shop"))
        assert git_says in output  # git's own stderr is there, masked
        assert f"127.0.0.1:{git_server}/repo.git?access_token=***" in output
        _, listed = await git_platform.call("GET", "/apps/shop/builds")
        _, audit = await git_platform.call("GET", "/apps/shop/audit")
        async with git_platform.control.store.tx(write=False) as tx:
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


@dataclass
class Inward:
    """A server inside the platform's network (loopback, both families): it records every
    connection made to it, so a test sees that nothing was fetched from it."""

    port: int
    connections: list[str]


@pytest.fixture
async def inward() -> AsyncIterator[Inward]:
    seen: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(str(writer.get_extra_info("peername")))
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    port = free_port()
    servers = [await asyncio.start_server(accept, "127.0.0.1", port)]
    with contextlib.suppress(OSError):  # a machine without IPv6 loopback
        servers.append(await asyncio.start_server(accept, "::1", port))
    try:
        yield Inward(port, seen)
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


def _resolving(monkeypatch: pytest.MonkeyPatch, name: str, *answers: str) -> list[str]:
    """``name`` resolves to each of ``answers`` in turn (the last one from then on), as a
    DNS server an attacker runs would answer; every other name as before. Returns the
    answers given."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    given: list[str] = []

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return await real(host, port, *args, **kwargs)
        address = answers[min(len(given), len(answers) - 1)]
        given.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return given


@dataclass
class Redirecting:
    """An HTTPS git server the operator allowed, answering every request with a 302."""

    port: int
    hits: list[str]


@pytest.fixture
async def redirecting(tmp_path: Path, inward: Inward) -> AsyncIterator[Redirecting]:
    """Redirects every request to ``inward``: the way round an allow-list that checks only
    the first URL."""
    pair = server_certificate("git", "test", now=datetime.datetime.now(datetime.UTC))
    (tmp_path / "tls.crt").write_text(pair.cert)
    (tmp_path / "tls.key").write_text(pair.key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    hits: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        target = f"https://127.0.0.1:{inward.port}{request.path_qs}"
        return web.Response(status=302, headers={"Location": target})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield Redirecting(port, hits)
    finally:
        await runner.cleanup()


#: What every refusal of an inward source says.
INSIDE = "which is inside the platform's network"


class TestInwardSources:
    """Attack (SSRF): a source URL an app token names, aimed at what the control plane
    reaches and the tenant does not (the agent API, the logs service, Postgres, Redis and
    search on loopback; the cluster's private ranges; the cloud metadata endpoint)."""

    @pytest.mark.parametrize(
        ("url", "address"),
        [
            ("https://127.0.0.1:{port}/r.git", "127.0.0.1"),
            ("https://[::1]:{port}/r.git", "::1"),
            ("https://169.254.169.254/latest/meta-data/r.git", "169.254.169.254"),
            ("https://localhost:{port}/r.git", "127.0.0.1"),
            ("https://git.localhost:{port}/r.git", "127.0.0.1"),
            ("https://2130706433:{port}/r.git", "127.0.0.1"),
            ("https://0x7f.1:{port}/r.git", "127.0.0.1"),
            ("https://017700000001:{port}/r.git", "127.0.0.1"),
            ("https://127.1:{port}/r.git", "127.0.0.1"),
            ("https://0.0.0.0:{port}/r.git", "0.0.0.0"),
            ("https://[::ffff:127.0.0.1]:{port}/r.git", "::ffff:7f00:1"),
            ("https://[::]:{port}/r.git", "::"),
            ("https://10.1.2.3/r.git", "10.1.2.3"),
            ("https://172.16.0.1/r.git", "172.16.0.1"),
            ("https://192.168.1.1/r.git", "192.168.1.1"),
            ("https://100.64.0.1/r.git", "100.64.0.1"),
            ("https://224.0.0.1/r.git", "224.0.0.1"),
            ("https://[fe80::1]/r.git", "fe80::1"),
            ("https://[fd00::1]/r.git", "fd00::1"),
            ("ssh://git@127.0.0.1:{port}/r.git", "127.0.0.1"),
            ("git@127.0.0.1:r.git", "127.0.0.1"),
            ("git@localhost:r.git", "127.0.0.1"),
            ("https://user:pw@127.0.0.1:{port}/r.git", "127.0.0.1"),
        ],
    )
    async def test_a_host_that_is_inward_is_refused_at_submission(
        self, platform: Platform, inward: Inward, url: str, address: str
    ) -> None:
        status, error = await platform.call(
            "POST",
            "/apps/shop/builds",
            {"source_blob": {"url": url.format(port=inward.port), "version": SHA}},
        )
        assert (status, error["id"]) == (403, "inward_source"), error
        assert f"source URL resolves to {address}, {INSIDE}" in error["message"]
        assert "SLIPWAY_SOURCES_ALLOW" in error["message"]
        assert "pw" not in error["message"]
        assert await platform.call("GET", "/apps/shop/builds") == (200, [])
        assert inward.connections == []

    @pytest.mark.parametrize(
        ("url", "status", "id"),
        [
            ("http://127.0.0.1:{port}/r.git", 403, "forbidden"),
            ("http://[::1]:{port}/r.git", 403, "forbidden"),
            ("http://169.254.169.254/latest/meta-data/", 403, "forbidden"),
            ("http://2130706433:{port}/r.git", 403, "forbidden"),
            ("http://0x7f.1:{port}/r.git", 403, "forbidden"),
            ("git://127.0.0.1:{port}/r.git", 403, "forbidden"),
            ("file:///proc/self/environ", 403, "forbidden"),
            # A name with its root's dot is no host the rules take, whatever it names.
            ("https://localhost.:{port}/r.git", 422, "invalid_source"),
            ("http://localhost.:{port}/r.git", 422, "invalid_source"),
            ("https://[fe80::1%25lo]:{port}/r.git", 422, "invalid_source"),
        ],
    )
    async def test_cleartext_local_and_odd_forms_are_refused_before_any_lookup(
        self, platform: Platform, inward: Inward, url: str, status: int, id: str
    ) -> None:
        got, error = await platform.call(
            "POST",
            "/apps/shop/builds",
            {"source_blob": {"url": url.format(port=inward.port), "version": SHA}},
        )
        assert (got, error["id"]) == (status, id), error
        assert await platform.call("GET", "/apps/shop/builds") == (200, [])
        assert inward.connections == []

    async def test_a_name_that_turns_inward_after_submission_fails_the_build(
        self, platform: Platform, inward: Inward, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Attack (DNS rebinding): a name that resolves outside when the API checks it, and
        to loopback when the build fetches."""
        given = _resolving(monkeypatch, "rebind.test", "203.0.113.7", "127.0.0.1")
        url = f"https://rebind.test:{inward.port}/r.git"
        status, build = await platform.call(
            "POST", "/apps/shop/builds", {"source_blob": {"url": url, "version": SHA}}
        )
        assert status == 201, build
        done = await platform.finished(build["id"])
        assert done["status"] == "failed"
        assert given == ["203.0.113.7", "127.0.0.1"]
        said = "\n".join(platform.sink.texts("shop"))
        assert f"source URL resolves to 127.0.0.1, {INSIDE}" in said
        assert f"SLIPWAY_SOURCES_ALLOW=127.0.0.1:{inward.port}" in said
        assert inward.connections == []

    async def test_git_connects_to_the_addresses_checked_not_to_its_own_answer(
        self, tmp_path: Path, inward: Inward, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """git resolving the name again could get another answer: it is given the checked
        one (here the only one: the machine's own resolver does not know the name)."""
        _resolving(monkeypatch, "pinned.test", "127.0.0.1")
        allowed = Egress(allow=parse_allow(f"127.0.0.1:{inward.port}"))
        async with running_platform(tmp_path, submit=allowed, fetch=allowed) as platform:
            url = f"https://pinned.test:{inward.port}/r.git"
            status, build = await platform.call(
                "POST", "/apps/shop/builds", {"source_blob": {"url": url, "version": SHA}}
            )
            assert status == 201, build
            done = await platform.finished(build["id"])
        assert done["status"] == "failed"  # the recorder speaks no TLS
        assert inward.connections != []

    async def test_a_redirect_from_an_allowed_server_to_an_inward_one_is_not_followed(
        self, tmp_path: Path, inward: Inward, redirecting: Redirecting
    ) -> None:
        """Attack: the operator allowed one internal git server; a tenant names a repository
        on it that answers with a redirect to loopback."""
        allowed = Egress(allow=parse_allow(f"127.0.0.1:{redirecting.port}"))
        # The test server's certificate is self-signed; verification is not what is tested.
        env = {"GIT_SSL_NO_VERIFY": "true"}
        url = f"https://127.0.0.1:{redirecting.port}/r.git"
        blob = {"source_blob": {"url": url, "version": SHA}}
        async with running_platform(tmp_path, submit=allowed, fetch=allowed, env=env) as platform:
            status, error = await platform.call(
                "POST",
                "/apps/shop/builds",
                {"source_blob": {"url": f"https://127.0.0.1:{inward.port}/r.git", "version": SHA}},
            )
            assert (status, error["id"]) == (403, "inward_source")
            status, build = await platform.call("POST", "/apps/shop/builds", blob)
            assert status == 201, build
            done = await platform.finished(build["id"])
            assert done["status"] == "failed"
            assert redirecting.hits != []  # the allowed server was asked...
            assert inward.connections == []  # ...and its redirect not followed
            # An admin's fetch is not held so (git follows a first redirect): the same URL
            # does reach the inward server, so the tenant's build above was held back.
            status, build = await platform.admin("POST", "/apps/shop/builds", blob)
            assert status == 201, build
            assert (await platform.finished(build["id"]))["status"] == "failed"
        assert inward.connections != []

    async def test_the_operator_may_allow_every_inward_address(
        self, tmp_path: Path, inward: Inward
    ) -> None:
        """A self-hosted install whose git server is on its private network."""
        everything = Egress(allow_private=True)
        async with running_platform(tmp_path, submit=everything, fetch=everything) as platform:
            url = f"https://127.0.0.1:{inward.port}/r.git"
            status, build = await platform.call(
                "POST", "/apps/shop/builds", {"source_blob": {"url": url, "version": SHA}}
            )
            assert status == 201, build
            assert (await platform.finished(build["id"]))["status"] == "failed"
        assert inward.connections != []


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


#: Branch names, good and bad by git's rules (git check-ref-format --branch is the judge).
BRANCH_NAMES = ["main", "feature/x", "v1.2", "release/2024-01", "é", "a@b", "a..b", "-x",
                "-", "has space", "tab\there", "ctl\x01", "del\x7f", "x.lock", "a/b.lock/c",
                "a/.b", ".a", "a/", "a.", "a@{b", "a//b", "/a", "a~b", "a^b", "a:b", "a?b",
                "a*b", "a[b", "a\\b", "--upload-pack=touch"]  # fmt: skip


@pytest.mark.parametrize("name", BRANCH_NAMES)
def test_a_branch_name_is_judged_as_git_judges_it(name: str) -> None:
    """The dashboard's "Deploy a branch" refuses what git would (control.builds.sources)."""
    git_says = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, check=False
    )
    if git_says.returncode == 0:
        assert check_branch(name) == name
    else:
        with pytest.raises(SourceError, match="is not a branch name"):
            check_branch(name)


class TestBranchHeads:
    """Attack: the dashboard's deploy asks a source for its branch's head (git ls-remote)
    before any build: a collaborator's source gets the checks builds:create makes, before
    git runs (Builds.branch_head)."""

    @pytest.mark.parametrize(
        "url",
        ["https://127.0.0.1:{port}/r.git", "https://localhost:{port}/r.git",
         "ssh://git@127.0.0.1:{port}/r.git", "https://169.254.169.254/r.git"],
    )  # fmt: skip
    async def test_an_inward_host_is_refused_before_git_connects(
        self, platform: Platform, inward: Inward, url: str
    ) -> None:
        with pytest.raises(Forbidden) as refused:
            await platform.builds.branch_head(url.format(port=inward.port), "main", tenant=True)
        assert refused.value.id == "inward_source"
        assert INSIDE in str(refused.value)
        assert inward.connections == []

    @pytest.mark.parametrize(
        ("url", "error", "id"),
        [("/etc", Forbidden, "forbidden"), ("file:///etc", Forbidden, "forbidden"),
         ("git://127.0.0.1:9/r.git", Forbidden, "forbidden"),
         ("ext::sh -c touch% pwned", Unprocessable, "invalid_source"),
         ("--upload-pack=touch pwned", Unprocessable, "invalid_source")],
    )  # fmt: skip
    async def test_what_an_app_token_may_not_name_is_refused_alike(
        self,
        platform: Platform,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        url: str,
        error: type[ApiError],
        id: str,
    ) -> None:
        monkeypatch.chdir(tmp_path)
        with pytest.raises(error) as refused:
            await platform.builds.branch_head(url, "main", tenant=True)
        assert refused.value.id == id
        assert list(tmp_path.rglob("pwned")) == []

    async def test_an_admins_repository_on_disk_answers_and_a_bad_name_never_reaches_git(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        repo = tmp_path / "repo"
        sha = commit(repo, python_app(deps=False))
        subprocess.run(["git", "-C", str(repo), "branch", "-M", "main"], check=True)
        assert await platform.builds.branch_head(str(repo), "main", tenant=False) == sha
        with pytest.raises(Unprocessable) as missing:
            await platform.builds.branch_head(str(repo), "nope", tenant=False)
        assert missing.value.id == "no_such_branch"
        with pytest.raises(Unprocessable) as bad:
            await platform.builds.branch_head(str(repo), "--upload-pack=touch", tenant=False)
        assert bad.value.id == "invalid_ref"
