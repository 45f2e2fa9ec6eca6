"""How the local builder hands a source to git: checked first, after '--', on allowed transports.

A git stand-in records the arguments and GIT_ALLOW_PROTOCOL of every call,
then runs the real git, so what git is told is seen exactly.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from control.builds.egress import Egress, parse_allow
from control.builds.errors import SourceError
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.model import Source
from control.builds.settings import BuildSettings
from tests.builds.apps import RecordingSink, commit, python_app
from tests.conftest import free_port

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    return tmp_path / "git-calls"


@pytest.fixture
def recording_builder(tmp_path: Path, calls: Path, sink: RecordingSink) -> LocalBuilder:
    real = shutil.which("git")
    assert real is not None
    script = tmp_path / "git"
    script.write_text(
        f'#!/bin/sh\nprintf \'%s|%s\\n\' "$GIT_ALLOW_PROTOCOL" "$*" >> {calls}\n'
        f'printf \'%s=%s\\n\' "$GIT_CONFIG_KEY_0" "$GIT_CONFIG_VALUE_0" >> {tmp_path}/git-config\n'
        f'exec {real} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    # Loopback allowed (the operator's SLIPWAY_SOURCES_ALLOW): the https test server is there.
    settings = BuildSettings(
        root=tmp_path / "builds",
        git=str(script),
        timeout=30,
        egress=Egress(allow=parse_allow("127.0.0.0/8")),
    )
    return LocalBuilder(settings, sink=sink, metrics=BuildMetrics(CollectorRegistry()))


def _fetches(calls: Path) -> list[list[str]]:
    """[GIT_ALLOW_PROTOCOL, arguments] of every git fetch the builder ran."""
    lines = calls.read_text().splitlines() if calls.exists() else []
    return [line.split("|", 1) for line in lines if " fetch " in line]


async def test_an_app_tokens_source_is_fetched_over_https_and_ssh_only_after_dashdash(
    recording_builder: LocalBuilder, calls: Path
) -> None:
    url = f"https://127.0.0.1:{free_port()}/r.git"
    with pytest.raises(SourceError, match="cannot fetch commit"):
        await recording_builder.build("demo", Source.git(url, SHA, tenant=True))
    [[protocols, argv]] = _fetches(calls)
    assert protocols == "https:ssh"
    assert argv.endswith(f"fetch --quiet -- {url} {SHA}")


async def test_an_admins_path_is_fetched_with_every_fetching_transport_but_no_helper(
    recording_builder: LocalBuilder, calls: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    sha = commit(repo, python_app(deps=False))
    artifact = await recording_builder.build("demo", Source.git(str(repo), sha))
    assert artifact.commit == sha
    [[protocols, argv]] = _fetches(calls)
    assert protocols == "file:git:http:https:ssh"
    assert argv.endswith(f"fetch --quiet -- {repo} {sha}")


@pytest.mark.parametrize(
    ("url", "tenant", "message"),
    [
        ("--upload-pack=touch /tmp/x", False, "git takes for an option"),
        ("ext::sh -c touch% /tmp/x", False, "remote helper"),
        ("/etc", True, "only an admin may build"),
        ("file:///etc", True, "only an admin may build"),
    ],
)
async def test_a_source_nobody_or_no_tenant_may_name_runs_no_git_at_all(
    recording_builder: LocalBuilder,
    calls: Path,
    sink: RecordingSink,
    url: str,
    tenant: bool,
    message: str,
) -> None:
    with pytest.raises(SourceError, match=message):
        await recording_builder.build("demo", Source.git(url, SHA, tenant=tenant))
    assert not calls.exists()
    assert sink.lines == []


@pytest.mark.parametrize(
    "url", ["https://169.254.169.254/r.git", "git@10.0.0.1:r.git", "https://[fd00::1]/r.git"]
)
async def test_a_tenants_inward_host_runs_no_git_and_the_build_says_why(
    recording_builder: LocalBuilder, calls: Path, sink: RecordingSink, url: str
) -> None:
    """The builder checks again, whoever handed it the source (the API checked first)."""
    with pytest.raises(SourceError, match="inside the platform's network"):
        await recording_builder.build("demo", Source.git(url, SHA, tenant=True))
    assert not calls.exists()
    [line] = sink.texts("demo")
    assert "SLIPWAY_SOURCES_ALLOW" in line


async def test_a_tenants_fetch_follows_no_redirect(
    recording_builder: LocalBuilder, calls: Path, tmp_path: Path
) -> None:
    url = f"https://127.0.0.1:{free_port()}/r.git"
    with pytest.raises(SourceError, match="cannot fetch commit"):
        await recording_builder.build("demo", Source.git(url, SHA, tenant=True))
    assert _fetches(calls)  # git ran...
    config = (tmp_path / "git-config").read_text().split()
    assert "http.followRedirects=false" in config  # ...told so
