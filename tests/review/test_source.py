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


@pytest.mark.parametrize(
    ("url", "reason"),
    [("--upload-pack=touch {marker}", "option"), ("ext::sh -c touch% {marker}", "remote helper")],
)
async def test_a_clone_url_that_is_an_option_or_a_helper_runs_nothing(
    tmp_path: Path, url: str, reason: str
) -> None:
    """Attack: a webhook payload whose clone_url makes git run a command."""
    marker = tmp_path / "pwned"
    with pytest.raises(ReviewError, match=reason):
        await GitAppJson().read(url.format(marker=marker), "a" * 40)
    assert not marker.exists()


async def test_git_s_error_shows_no_credentials_of_the_clone_url(unused_port: int) -> None:
    url = f"http://x-access-token:ghs_s3cr3t@127.0.0.1:{unused_port}/r.git?token=tok-42"
    with pytest.raises(ReviewError) as caught:
        await GitAppJson().read(url, "a" * 40)
    assert "ghs_s3cr3t" not in str(caught.value)
    assert "tok-42" not in str(caught.value)
