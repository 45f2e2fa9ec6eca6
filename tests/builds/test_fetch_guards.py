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
        f'#!/bin/sh\nprintf \'%s|%s\\n\' "$GIT_ALLOW_PROTOCOL" "$*" >> {calls}\nexec {real} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    settings = BuildSettings(root=tmp_path / "builds", git=str(script), timeout=30)
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
