"""``slipway builds:create`` and ``slipway builds`` against ``serve control`` with a build root."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from control.cli import main
from control.up import Up
from tests.agent.conftest import ListSink
from tests.builds.apps import commit, git, python_app
from tests.control.conftest import ADMIN_TOKEN, builder_up_settings
from tests.control.server import Server, cli_runner, control_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("builds-cli")
    with control_server(tmp, extra_env={"SLIPWAY_BUILD_ROOT": str(tmp / "builds")}) as running:
        yield running


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> CliRunner:
    return cli_runner(server, tmp_path / "config")


class TestBuildsFromTheCli:
    def test_a_directory_is_uploaded_built_and_released(
        self, cli: CliRunner, tmp_path: Path
    ) -> None:
        source = tmp_path / "src"
        commit(source, python_app(deps=False))  # a .git directory, which is not sent
        (source / ".venv").mkdir()
        (source / ".venv" / "junk").write_text("never uploaded")
        assert cli.invoke(main, ["apps:create", "cli-up"]).exit_code == 0
        result = cli.invoke(main, ["builds:create", str(source), "-a", "cli-up", "--json"])
        assert result.exit_code == 0, result.output
        build = json.loads(result.output)
        assert (build["status"], build["release"]) == (
            "succeeded",
            {"version": 2, "status": "succeeded"},
        )
        slug = Path(build["artifact"]) / "app"
        assert (slug / "Procfile").is_file()
        assert not (slug / ".git").exists()
        assert not (slug / ".venv").exists()

    def test_a_branch_of_a_git_repository_is_resolved_and_built(
        self, cli: CliRunner, tmp_path: Path
    ) -> None:
        repo = tmp_path / "repo"
        sha = commit(repo, python_app(deps=False))
        branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
        assert cli.invoke(main, ["apps:create", "cli-git"]).exit_code == 0
        result = cli.invoke(
            main, ["builds:create", "--git", str(repo), "--ref", branch, "-a", "cli-git"]
        )
        assert result.exit_code == 0, result.output
        assert "succeeded, v2 succeeded" in result.output
        listed = cli.invoke(main, ["builds", "-a", "cli-git"])
        assert listed.exit_code == 0
        assert sha in listed.output

    def test_a_failed_build_exits_1_with_its_reason(self, cli: CliRunner, tmp_path: Path) -> None:
        repo = tmp_path / "repo"
        sha = commit(repo, {"README": "no Procfile here\n"})
        assert cli.invoke(main, ["apps:create", "cli-bad"]).exit_code == 0
        result = cli.invoke(
            main, ["builds:create", "--git", str(repo), "--ref", sha, "-a", "cli-bad"]
        )
        assert result.exit_code == 1
        assert "failed" in result.output
        assert "Procfile" in result.output

    def test_a_source_is_required_and_only_one(self, cli: CliRunner, tmp_path: Path) -> None:
        result = cli.invoke(main, ["builds:create", "-a", "cli-up"])
        assert result.exit_code == 1
        assert "give a DIRECTORY" in result.output
        result = cli.invoke(main, ["builds:create", "--git", str(tmp_path), "-a", "cli-up"])
        assert "--git needs --ref" in result.output


class TestBuildOutputUnderSlipwayUp:
    async def test_builds_create_prints_the_build_s_lines_once_each(self, tmp_path: Path) -> None:
        """The CLI follows output_stream_url on the logs service while the build runs."""
        settings = builder_up_settings(tmp_path)
        sink = ListSink()
        up = Up(settings, app_sink=sink, router_sink=sink)
        await up.start()
        try:
            assert up.control is not None
            runner = CliRunner(
                env={
                    "SLIPWAY_API_URL": f"http://127.0.0.1:{up.control.port}",
                    "SLIPWAY_TOKEN": ADMIN_TOKEN,
                    "XDG_CONFIG_HOME": str(tmp_path / "config"),
                }
            )
            source = tmp_path / "src"
            commit(source, python_app(deps=False))

            def cli(*args: str) -> Result:
                return runner.invoke(main, list(args), catch_exceptions=False)

            assert (await asyncio.to_thread(cli, "apps:create", "streamed")).exit_code == 0
            result = await asyncio.to_thread(cli, "builds:create", str(source), "-a", "streamed")
            assert result.exit_code == 0, result.output
            lines = result.output.splitlines()
            for wanted in ("-----> Python app detected", "-----> Released v2"):
                assert lines.count(wanted) == 1, result.output
            assert lines[-1].endswith("succeeded, v2 succeeded")
        finally:
            await up.stop()
