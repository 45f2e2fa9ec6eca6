"""`slipway login --user NAME` signs in as `slipway login:password` does (one implementation);
`slipway login` without it still takes a token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from control.cli import main
from tests.control.server import Server, cli_runner, control_server

PASSWORD = "a-long-enough-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with control_server(tmp_path_factory.mktemp("login-user")) as running:
        cli = cli_runner(running, tmp_path_factory.mktemp("admin-config"))
        for args in (["apps:create", "team-a"], ["apps:create", "team-b"]):
            assert cli.invoke(main, args).exit_code == 0
        made = cli.invoke(
            main, ["users:create", "collab", "--app", "team-a", "--password", PASSWORD]
        )
        assert made.exit_code == 0, made.output
        yield running


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> CliRunner:
    """No token in the environment: only the login file counts."""
    return CliRunner(env={**cli_runner(server, tmp_path / "config").env, "SLIPWAY_TOKEN": None})


def saved(tmp_path: Path) -> Path:
    return tmp_path / "config" / "slipway" / "token"


def test_login_with_a_user_asks_the_password_and_saves_their_token(
    cli: CliRunner, tmp_path: Path
) -> None:
    result = cli.invoke(main, ["login", "--user", "collab"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "Logged in as collab (team-a)" in result.output
    assert PASSWORD not in result.output
    assert saved(tmp_path).stat().st_mode & 0o777 == 0o600
    # The saved token is the collaborator's: their app, not another team's.
    apps = cli.invoke(main, ["apps"])
    assert apps.exit_code == 0, apps.output
    assert "team-a" in apps.output.split()
    assert "team-b" not in apps.output.split()
    denied = cli.invoke(main, ["config", "-a", "team-b"])
    assert denied.exit_code == 1


def test_login_with_a_user_and_a_wrong_password_saves_nothing(
    cli: CliRunner, tmp_path: Path
) -> None:
    result = cli.invoke(main, ["login", "--user", "collab", "--password", "not-the-password"])
    assert result.exit_code == 1
    assert "wrong user name or password" in result.output
    assert not saved(tmp_path).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["login", "--user", "collab", "--token", "slw_x"], "give --token or --user, not both"),
        (["login", "--password", PASSWORD], "--password goes with --user"),
    ],
)
def test_contradictory_options_are_a_usage_error(
    cli: CliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    result = cli.invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output
    assert not saved(tmp_path).exists()


def test_login_without_a_user_still_takes_a_token(
    cli: CliRunner, server: Server, tmp_path: Path
) -> None:
    result = cli.invoke(main, ["login"], input=server.token + "\n")
    assert result.exit_code == 0, result.output
    assert "Logged in with token 'bootstrap'" in result.output
    assert saved(tmp_path).read_text().strip() == server.token
