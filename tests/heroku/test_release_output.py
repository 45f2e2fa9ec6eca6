"""The release phase's output follows the build's lines in ``builds:create``, failed or not,
as ``git push heroku`` shows it, and stays in the release record."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.builds.apps import commit, python_app
from tests.heroku.conftest import Platform

FAILING = (
    "release: python -c \"print('migrating 1 of 2'); print('boom'); raise SystemExit(3)\"\n"
    "web: python app.py\n"
)


async def test_a_failed_release_phase_shows_its_output_then_says_it_failed(
    platform: Platform, tmp_path: Path
) -> None:
    assert (await platform.cli("apps:create", "failing")).exit_code == 0
    repo = tmp_path / "repo"
    sha = await asyncio.to_thread(commit, repo, python_app(procfile=FAILING, deps=False))

    result = await platform.cli("builds:create", "--git", str(repo), "--ref", sha, "-a", "failing")

    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    running = lines.index(
        "-----> Running release command: python -c \"print('migrating 1 of 2'); "
        "print('boom'); raise SystemExit(3)\""
    )
    assert lines[running + 1 : running + 3] == ["       migrating 1 of 2", "       boom"]
    failed = [line for line in lines if line.startswith(" !     Release v2 failed: ")]
    assert len(failed) == 1, result.output
    assert lines.index(failed[0]) > running + 2
    status, release = await platform.call("GET", "/apps/failing/releases/2")
    assert status == 200
    assert release["status"] == "failed"
    assert "migrating 1 of 2\nboom" in release["output"]
