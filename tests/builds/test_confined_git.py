"""A build of a repository on this machine, under a sandbox with a uid per app (``slipway up``).

The sandbox sees none of the host's paths, so git cannot fetch a local
repository from inside it: the builder reads such a repository from outside
(``git archive``, as slipway's own user), and that only for a source an admin
named. An app token may name no path on this machine at all, not ``/etc``, not
another app's build cache: the API refuses it (403) before any git runs.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from control.builds.errors import SourceError
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.model import Source
from control.builds.settings import BuildSettings
from kit.spawn import Confiner, detect
from tests.builds.apps import RecordingSink, commit, python_app


@pytest.fixture
def confiner() -> Confiner:
    found = detect()
    if not found.confined:
        pytest.skip(f"no sandbox on this machine: {found.reason}")
    return found


def _builder(tmp_path: Path, confiner: Confiner) -> LocalBuilder:
    settings = BuildSettings(root=tmp_path / "builds", pip_args=("--no-index",), timeout=120)
    return LocalBuilder(
        settings, sink=RecordingSink(), metrics=BuildMetrics(CollectorRegistry()), confiner=confiner
    )


async def test_an_admins_local_repository_builds_under_the_sandbox(
    tmp_path: Path, confiner: Confiner
) -> None:
    repo = tmp_path / "repo"
    sha = await asyncio.to_thread(commit, repo, python_app(deps=False))
    builder = _builder(tmp_path, confiner)

    by_path = await builder.build("local", Source.git(str(repo), sha))
    by_url = await builder.build("local", Source.git(f"file://{repo}", sha[:12]))

    assert by_path.commit == by_url.commit == sha
    assert by_path.slug is not None
    assert (by_path.slug / "app" / "Procfile").is_file()


async def test_an_unknown_commit_of_a_local_repository_says_what_git_said(
    tmp_path: Path, confiner: Confiner
) -> None:
    repo = tmp_path / "repo"
    await asyncio.to_thread(commit, repo, python_app(deps=False))

    with pytest.raises(SourceError) as raised:
        await _builder(tmp_path, confiner).build("local", Source.git(str(repo), "0" * 40))

    assert f"cannot fetch commit {'0' * 40} from {repo}" in str(raised.value)


@pytest.mark.parametrize(
    "url", ["/etc", "file:///etc", "file://localhost/etc", "builds/cache/other/repo.git"]
)
async def test_a_tenant_may_name_no_path_on_this_machine(
    tmp_path: Path, confiner: Confiner, url: str
) -> None:
    with pytest.raises(SourceError) as raised:
        await _builder(tmp_path, confiner).build("local", Source.git(url, "a" * 40, tenant=True))
    assert "https://" in str(raised.value)  # it says what a tenant may name


async def test_a_repository_owned_by_another_user_is_refused_by_git(
    tmp_path: Path, confiner: Confiner
) -> None:
    """Another app's files (its build cache, its slug) belong to that app's uid: read from
    outside the sandbox, git's ownership check still refuses them, even to an admin."""
    repo = tmp_path / "repo"
    sha = await asyncio.to_thread(commit, repo, python_app(deps=False))
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 54321, 54321)

    with pytest.raises(SourceError) as raised:
        await _builder(tmp_path, confiner).build("local", Source.git(str(repo), sha))

    assert "dubious ownership" in str(raised.value)
