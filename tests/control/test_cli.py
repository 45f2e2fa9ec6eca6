"""The ``slipway`` CLI through click's CliRunner, against a real API server process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from control.cli import main
from tests.control.server import Server, cli_runner, control_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with control_server(tmp_path_factory.mktemp("cli")) as running:
        yield running


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> CliRunner:
    return cli_runner(server, tmp_path / "config")


def run(cli: CliRunner, *args: str, ok: bool = True) -> Result:
    result = cli.invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1, result.output
    return result


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "Procfile").write_text(
        "# the app\nweb: python -m http.server $PORT\n\nworker: sleep 1000\n"
    )
    return tmp_path


class TestApps:
    def test_create_list_rename_destroy(self, cli: CliRunner) -> None:
        assert run(cli, "apps:create", "cli-one").output == "Creating cli-one... done\n"
        assert "cli-one" in run(cli, "apps").output.splitlines()
        listed = json.loads(run(cli, "apps", "--json").output)
        assert "cli-one" in [a["name"] for a in listed]
        assert "to cli-two" in run(cli, "apps:rename", "cli-two", "-a", "cli-one").output
        refused = run(cli, "apps:destroy", "-a", "cli-two", ok=False)
        assert "confirm with --confirm cli-two" in refused.output
        run(cli, "apps:destroy", "-a", "cli-two", "--confirm", "cli-two")
        assert "cli-two" not in run(cli, "apps").output

    def test_a_taken_name_fails_with_the_apis_reason(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "cli-dup")
        result = run(cli, "apps:create", "cli-dup", ok=False)
        assert result.output == "Error: an app named 'cli-dup' already exists (name_taken)\n"

    def test_a_missing_app_option_is_a_clear_error(self, cli: CliRunner) -> None:
        assert "no app given: use --app NAME" in run(cli, "config", ok=False).output

    def test_the_app_can_come_from_slipway_app(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "cli-env")
        result = cli.invoke(main, ["config", "--json"], env={"SLIPWAY_APP": "cli-env"})
        assert (result.exit_code, json.loads(result.output)) == (0, {})


class TestConfig:
    def test_set_get_unset(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "cli-config")
        out = run(cli, "config:set", "A=1", "B=x=y", "-a", "cli-config").output
        assert out == "Setting A, B and restarting cli-config... done, v2\n"
        assert run(cli, "config:get", "B", "-a", "cli-config").output == "x=y\n"
        assert run(cli, "config", "-a", "cli-config").output.splitlines() == [
            "=== cli-config Config Vars",
            "A: 1",
            "B: x=y",
        ]
        assert "done, v3" in run(cli, "config:unset", "A", "-a", "cli-config").output
        assert json.loads(run(cli, "config", "--json", "-a", "cli-config").output) == {"B": "x=y"}

    def test_a_missing_key_and_a_bad_pair_are_errors(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "cli-config2")
        assert (
            "has no config var NOPE"
            in run(cli, "config:get", "NOPE", "-a", "cli-config2", ok=False).output
        )
        assert (
            "'NOPE' is not KEY=VALUE"
            in run(cli, "config:set", "NOPE", "-a", "cli-config2", ok=False).output
        )
        bad = run(cli, "config:set", "1X=1", "-a", "cli-config2", ok=False)
        assert "config var name '1X' is invalid (invalid_config_var)" in bad.output


class TestReleases:
    def test_deploy_list_and_roll_back(self, cli: CliRunner, app_dir: Path) -> None:
        run(cli, "apps:create", "cli-rel")
        assert "done, v2" in run(cli, "deploy", str(app_dir), "-a", "cli-rel").output
        run(cli, "config:set", "COLOR=blue", "-a", "cli-rel")
        run(cli, "config:set", "COLOR=red", "-a", "cli-rel")
        assert "done, v5" in run(cli, "releases:rollback", "v3", "-a", "cli-rel").output
        lines = run(cli, "releases", "-a", "cli-rel").output.splitlines()
        assert lines[0] == "=== cli-rel Releases"
        assert lines[1].startswith("v5    Rollback to v3 (current)")
        assert lines[-1].startswith("v1    Initial release")
        assert run(cli, "config:get", "COLOR", "-a", "cli-rel").output == "blue\n"

    def test_a_failing_release_command_prints_its_output(
        self, cli: CliRunner, tmp_path: Path
    ) -> None:
        (tmp_path / "Procfile").write_text("web: true\nrelease: echo boom >&2; exit 4\n")
        run(cli, "apps:create", "cli-fail")
        result = run(cli, "deploy", str(tmp_path), "-a", "cli-fail", ok=False)
        assert (
            "the release command of v2 failed; v1 keeps running (release_failed)" in result.output
        )
        assert "boom" in result.output

    def test_bad_versions_and_procfiles_are_errors(self, cli: CliRunner, tmp_path: Path) -> None:
        run(cli, "apps:create", "cli-bad")
        assert (
            "'latest' is not a release version"
            in run(cli, "releases:rollback", "latest", "-a", "cli-bad", ok=False).output
        )
        assert (
            "has no release v9"
            in run(cli, "releases:rollback", "v9", "-a", "cli-bad", ok=False).output
        )
        (tmp_path / "Procfile").write_text("web python app.py\n")
        assert (
            "Procfile:1: expected 'type: command'"
            in run(cli, "deploy", str(tmp_path), "-a", "cli-bad", ok=False).output
        )
        empty = tmp_path / "empty"
        empty.mkdir()
        assert "cannot read" in run(cli, "deploy", str(empty), "-a", "cli-bad", ok=False).output


class TestProcesses:
    def test_scale_show_and_restart(self, cli: CliRunner, app_dir: Path) -> None:
        run(cli, "apps:create", "cli-ps")
        run(cli, "deploy", str(app_dir), "-a", "cli-ps")
        out = run(cli, "ps:scale", "web=2", "worker=1", "-a", "cli-ps").output
        assert out == "Scaling cli-ps... done, now running web=2, worker=1\n"
        shown = run(cli, "ps", "-a", "cli-ps").output.splitlines()
        # No runtime behind `serve control` alone: the types are shown, with nothing running.
        assert shown == [
            "=== web (2, sleeps after 5m)",
            "(none running)",
            "=== worker (1, sleeps after 5m)",
            "(none running)",
        ]
        assert (
            run(cli, "ps:restart", "web", "-a", "cli-ps").output
            == "Restarting web processes of cli-ps... done\n"
        )
        assert "Restarting all" in run(cli, "ps:restart", "-a", "cli-ps").output

    def test_autoscale_is_set_shown_in_ps_changed_and_turned_off(
        self, cli: CliRunner, app_dir: Path
    ) -> None:
        run(cli, "apps:create", "cli-auto")
        run(cli, "deploy", str(app_dir), "-a", "cli-auto")
        assert run(cli, "ps:autoscale", "-a", "cli-auto").output == (
            "cli-auto web does not autoscale (ps:autoscale web --target N)\n"
        )
        out = run(
            cli, "ps:autoscale", "web", "--target", "10", "--min", "1", "--max", "5",
            "--panic-window", "3s", "-a", "cli-auto",
        ).output  # fmt: skip
        assert out == (
            "cli-auto web now autoscales: 10 in flight per process, 1-5 processes "
            "(windows 1m/3s, panic at 2x, down after 1m)\n"
        )
        formation = json.loads(run(cli, "ps:autoscale", "--json", "-a", "cli-auto").output)
        assert formation["autoscale"]["panic_window"] == 3.0
        # One setting changed: the others stay as they were.
        run(cli, "ps:autoscale", "web", "--scale-down-delay", "2m", "-a", "cli-auto")
        shown = json.loads(run(cli, "ps:autoscale", "--json", "-a", "cli-auto").output)
        assert (shown["autoscale"]["target"], shown["autoscale"]["scale_down_delay"]) == (10, 120)
        assert (shown["min_scale"], shown["max_scale"]) == (1, 5)
        lines = run(cli, "ps", "-a", "cli-auto").output.splitlines()
        # `serve control` alone runs no agent: the settings, and no decision to show.
        assert lines[:2] == [
            "=== web (1, sleeps after 5m)",
            "autoscale: 10 in flight per process, 1-5 processes (no agent runs it here)",
        ]
        ps_json = json.loads(run(cli, "ps", "--json", "-a", "cli-auto").output)
        assert (ps_json["autoscale"]["enabled"], ps_json["autoscale"]["max"]) == (True, 5)
        assert run(cli, "ps:autoscale:disable", "web", "-a", "cli-auto").output == (
            "Autoscaling of cli-auto web turned off; it runs 1 (ps:scale web=N to change)\n"
        )
        assert "autoscale" not in run(cli, "ps", "-a", "cli-auto").output
        assert json.loads(run(cli, "ps", "--json", "-a", "cli-auto").output)["autoscale"] is None

    def test_bad_autoscale_requests_are_errors(self, cli: CliRunner, app_dir: Path) -> None:
        run(cli, "apps:create", "cli-auto2")
        run(cli, "deploy", str(app_dir), "-a", "cli-auto2")
        cases = [
            (("web", "--max", "4"), "web does not autoscale yet: give --target"),
            (("web", "--panic-window", "3s"), "web does not autoscale yet: give --target"),
            (("web", "--target", "5", "--panic-window", "soon"), "--panic-window: "),
            (("worker", "--target", "5"), "autoscale applies to web only"),
            (("clock", "--target", "5"), "cli-auto2 has no process type 'clock'"),
            (("web", "--target", "0"), "target must be above 0"),
            (("web", "--target", "5", "--panic-window", "2m"), "at most the stable_window"),
            (("web", "--target", "5", "--max", "500"), "max_scale must be an integer from 0"),
        ]
        for args, message in cases:
            result = run(cli, "ps:autoscale", *args, "-a", "cli-auto2", ok=False)
            assert message in result.output, (args, result.output)
        # Nothing was set by any of them.
        shown = json.loads(run(cli, "ps:autoscale", "--json", "-a", "cli-auto2").output)
        assert shown["autoscale"] is None

    def test_bad_scale_requests_are_errors(self, cli: CliRunner, app_dir: Path) -> None:
        run(cli, "apps:create", "cli-ps2")
        run(cli, "deploy", str(app_dir), "-a", "cli-ps2")
        assert (
            "'web:2' is not TYPE=QUANTITY"
            in run(cli, "ps:scale", "web:2", "-a", "cli-ps2", ok=False).output
        )
        assert (
            "no process type 'clock'"
            in run(cli, "ps:scale", "clock=1", "-a", "cli-ps2", ok=False).output
        )
        assert (
            "quantity must be an integer from 0 to 100"
            in run(cli, "ps:scale", "web=500", "-a", "cli-ps2", ok=False).output
        )


class TestAddons:
    def test_create_list_destroy_postgres(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "cli-addons")
        out = run(cli, "addons:create", "postgres:mini", "-a", "cli-addons").output
        assert "DATABASE_URL set" in out
        created = json.loads(run(cli, "addons", "--json", "-a", "cli-addons").output)
        name = created[0]["name"]
        assert (
            f"{name}  postgres:mini  as DATABASE" in run(cli, "addons", "-a", "cli-addons").output
        )
        assert run(cli, "config:get", "DATABASE_URL", "-a", "cli-addons").output.startswith(
            "postgresql://"
        )
        refused = run(cli, "addons:destroy", name, "-a", "cli-addons", ok=False)
        assert "confirm with --confirm cli-addons" in refused.output
        run(cli, "addons:destroy", name, "-a", "cli-addons", "--confirm", "cli-addons")
        assert json.loads(run(cli, "addons", "--json", "-a", "cli-addons").output) == []

    def test_redis_under_another_name(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "cli-redis")
        assert (
            "CACHE_URL set"
            in run(cli, "addons:create", "redis:shared", "--as", "CACHE", "-a", "cli-redis").output
        )

    def test_an_unknown_service_is_an_error(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "cli-mysql")
        result = run(cli, "addons:create", "mysql", "-a", "cli-mysql", ok=False)
        assert "no 'mysql' add-on service here (available: postgres, redis)" in result.output


class TestAuthAndReach:
    def test_without_a_token_the_cli_says_how_to_log_in(self, cli: CliRunner) -> None:
        result = cli.invoke(main, ["apps"], env={"SLIPWAY_TOKEN": None})
        assert result.exit_code == 1
        assert "not logged in: set SLIPWAY_TOKEN or run `slipway login`" in result.output

    def test_a_bad_token_is_refused(self, cli: CliRunner) -> None:
        result = cli.invoke(main, ["apps"], env={"SLIPWAY_TOKEN": "slw_wrong"})
        assert result.exit_code == 1
        assert "the token is not valid (unauthorized)" in result.output

    def test_login_saves_the_token_for_later_commands(self, cli: CliRunner, server: Server) -> None:
        result = cli.invoke(main, ["login"], input=server.token + "\n", env={"SLIPWAY_TOKEN": None})
        assert result.exit_code == 0, result.output
        assert "Logged in with token 'bootstrap'" in result.output
        assert cli.invoke(main, ["apps"], env={"SLIPWAY_TOKEN": None}).exit_code == 0

    def test_login_refuses_a_bad_token(self, cli: CliRunner) -> None:
        result = cli.invoke(main, ["login", "--token", "slw_wrong"], env={"SLIPWAY_TOKEN": None})
        assert result.exit_code == 1
        assert "the token is not valid" in result.output

    def test_an_app_token_works_for_its_app_only(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "cli-scoped")
        run(cli, "apps:create", "cli-other")
        token = run(cli, "tokens:create", "ci", "-a", "cli-scoped").output.strip()
        scoped = {"SLIPWAY_TOKEN": token}
        assert cli.invoke(main, ["config", "-a", "cli-scoped"], env=scoped).exit_code == 0
        denied = cli.invoke(main, ["config", "-a", "cli-other"], env=scoped)
        assert denied.exit_code == 1
        assert "this token may not act on app 'cli-other' (forbidden)" in denied.output

    def test_an_unreachable_api_is_a_clear_error(self, cli: CliRunner) -> None:
        result = cli.invoke(main, ["apps"], env={"SLIPWAY_API_URL": "http://127.0.0.1:1"})
        assert result.exit_code == 1
        assert "cannot reach the slipway API at http://127.0.0.1:1" in result.output

    def test_domains_are_added_listed_opened_and_removed(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "cli-domains")
        added = run(cli, "domains:add", "WWW.Shop.test", "-a", "cli-domains").output
        assert added == "Adding www.shop.test to cli-domains... done\n"
        listed = run(cli, "domains", "-a", "cli-domains").output
        assert listed == "=== cli-domains Domains\nwww.shop.test  (custom)\n"
        opened = run(cli, "open", "--url-only", "-a", "cli-domains").output
        assert opened == "http://www.shop.test/\n"
        taken = run(cli, "domains:add", "www.shop.test", "-a", "cli-domains", ok=False).output
        assert "www.shop.test is already a domain of cli-domains (domain_taken)" in taken
        run(cli, "domains:remove", "www.shop.test", "-a", "cli-domains")
        assert run(cli, "domains", "-a", "cli-domains", "--json").output.strip() == "[]"
        gone = run(cli, "domains:remove", "www.shop.test", "-a", "cli-domains", ok=False).output
        assert "cli-domains has no domain www.shop.test" in gone

    def test_open_prints_the_apps_url(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "cli-open")
        result = cli.invoke(
            main, ["open", "--url-only", "-a", "cli-open"], env={"SLIPWAY_APPS_DOMAIN": "apps.test"}
        )
        assert (result.exit_code, result.output) == (0, "http://cli-open.apps.test/\n")
        assert (
            "no app named 'nope'" in run(cli, "open", "--url-only", "-a", "nope", ok=False).output
        )
