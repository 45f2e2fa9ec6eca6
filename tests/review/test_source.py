"""Reading app.json at a commit from a real git repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.review.errors import ReviewError
from control.review.source import GitAppJson
from tests.builds.apps import commit


async def test_app_json_is_read_at_the_given_commit_not_the_branch_tip(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = commit(repo, {"app.json": '{"name": "one"}'})
    commit(repo, {"app.json": '{"name": "two"}'})

    assert await GitAppJson().read(str(repo), first) == '{"name": "one"}'


async def test_a_commit_without_app_json_reads_as_none(tmp_path: Path) -> None:
    sha = commit(tmp_path / "repo", {"Procfile": "web: x\n"})
    assert await GitAppJson().read(str(tmp_path / "repo"), sha) is None


async def test_an_unknown_commit_or_repository_is_an_error(tmp_path: Path) -> None:
    commit(tmp_path / "repo", {"Procfile": "web: x\n"})
    with pytest.raises(ReviewError, match="git fetch failed"):
        await GitAppJson().read(str(tmp_path / "repo"), "0" * 40)
    with pytest.raises(ReviewError, match="not a hexadecimal sha"):
        await GitAppJson().read(str(tmp_path / "repo"), "HEAD")
