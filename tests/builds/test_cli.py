"""``slipway build`` on a real repository."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from control.cli import main
from tests.builds.apps import commit, python_app


def test_slipway_build_builds_a_commit_and_prints_the_artifact(tmp_path: Path) -> None:
    sha = commit(tmp_path / "repo", python_app(deps=False))
    result = CliRunner().invoke(
        main,
        [
            "build",
            "demo",
            "--git",
            str(tmp_path / "repo"),
            "--commit",
            sha,
            "--root",
            str(tmp_path / "b"),
        ],
    )

    assert result.exit_code == 0, result.output
    artifact = json.loads(result.stdout)
    assert artifact["commit"] == sha
    assert artifact["process_types"] == {"web": "python app.py", "worker": "python worker.py"}
    assert Path(artifact["slug"], "app", "Procfile").is_file()
    assert "-----> Python app detected" in result.stderr


def test_slipway_build_explains_a_failed_build_and_exits_non_zero(tmp_path: Path) -> None:
    sha = commit(tmp_path / "repo", {"Procfile": "web\n", "requirements.txt": ""})
    result = CliRunner().invoke(
        main,
        [
            "build",
            "demo",
            "--git",
            str(tmp_path / "repo"),
            "--commit",
            sha,
            "--root",
            str(tmp_path / "b"),
        ],
    )

    assert result.exit_code == 1
    assert "build failed: Procfile line 1: expected 'name: command'" in result.stderr


def test_slipway_build_needs_a_commit_with_git(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["build", "demo", "--git", str(tmp_path)])

    assert result.exit_code == 2
    assert "a git Source needs the commit to build" in result.output
