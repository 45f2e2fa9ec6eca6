"""A Node app through npm ci, and the edges of what a Source may be."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from control.builds.errors import SourceError
from control.builds.local import LocalBuilder
from control.builds.model import Source, Stack
from control.builds.settings import BuildSettings
from tests.builds.apps import commit

NODE_APP = {
    "Procfile": "web: node index.js\n",
    "index.js": "console.log('hello from node')\n",
    "package.json": '{"name": "demo", "version": "1.0.0", "private": true}\n',
    "package-lock.json": (
        '{"name": "demo", "version": "1.0.0", "lockfileVersion": 3, "requires": true,'
        ' "packages": {"": {"name": "demo", "version": "1.0.0"}}}\n'
    ),
}


async def test_a_node_app_is_installed_with_npm_ci_and_its_modules_cached_for_the_next_build(
    tmp_path: Path, builder: LocalBuilder, settings: BuildSettings
) -> None:
    repo = tmp_path / "repo"
    first = commit(repo, NODE_APP)
    second = commit(repo, {"index.js": "console.log('v2')\n"})

    cold = await builder.build("web", Source.git(str(repo), first))
    warm = await builder.build("web", Source.git(str(repo), second))

    assert cold.stack is Stack.NODE
    assert dict(cold.process_types) == {"web": "node index.js"}
    modules = (cold.slug / "app" / "node_modules").resolve()
    assert modules.is_dir()
    assert modules.is_relative_to(settings.cache_dir / "web" / "deps")
    assert (cold.cache_hit, warm.cache_hit) == (False, True)
    assert (warm.slug / "app" / "node_modules").resolve() == modules


def test_a_source_is_either_git_with_a_commit_or_a_tarball() -> None:
    with pytest.raises(ValueError, match="either a git URL with a commit or a tarball"):
        Source()
    with pytest.raises(ValueError, match="either a git URL with a commit or a tarball"):
        Source(git_url="https://x.test/r.git", tarball=Path("/tmp/x.tar"))
    with pytest.raises(ValueError, match="needs the commit"):
        Source(git_url="https://x.test/r.git")


async def test_an_archive_that_is_not_a_tarball_is_a_source_error(
    tmp_path: Path, builder: LocalBuilder, settings: BuildSettings
) -> None:
    upload = tmp_path / "upload.tar.gz"
    upload.write_bytes(b"this is not a tarball")

    with pytest.raises(SourceError, match=r"cannot unpack source archive upload\.tar\.gz"):
        await builder.build("demo", Source.archive(upload))
    assert list(settings.work_dir.iterdir()) == []


async def test_an_archive_with_paths_outside_its_root_is_refused(
    tmp_path: Path, builder: LocalBuilder
) -> None:
    upload = tmp_path / "evil.tar"
    with tarfile.open(upload, "w") as tar:
        data = b"owned\n"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with pytest.raises(SourceError, match=r"cannot unpack source archive evil\.tar"):
        await builder.build("demo", Source.archive(upload))
    assert not (tmp_path / "escaped.txt").exists()
