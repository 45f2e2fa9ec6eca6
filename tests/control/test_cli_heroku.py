"""The commands a Heroku user types, against a real ``slipway serve control`` on loopback.

``serve control`` alone runs one-off commands (``run``) and release phases itself,
in the release's directory: what ``slipway run`` streams back here is a real
process's output and exit code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from control.cli import main
from tests.builds.apps import commit, python_app
from tests.control.server import Server, cli_runner, control_server

SLIPWAY = str(Path(sys.executable).parent / "slipway")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("cli-heroku")
    with control_server(tmp, extra_env={"SLIPWAY_BUILD_ROOT": str(tmp / "builds")}) as running:
        yield running


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> CliRunner:
    return cli_runner(server, tmp_path / "config")


def run(cli: CliRunner, *args: str, code: int = 0) -> Result:
    result = cli.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def api(server: Server, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """One API call; the status and the JSON body, for 4xx as well as 2xx."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {server.token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def deployed(cli: CliRunner, name: str, directory: Path, procfile: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Procfile").write_text(procfile)
    run(cli, "apps:create", name)
    run(cli, "deploy", str(directory), "-a", name)


class TestAppsLikeHeroku:
    def test_create_without_a_name_makes_one_up(self, cli: CliRunner) -> None:
        out = run(cli, "apps:create").output
        match = re.fullmatch(r"Creating ([a-z]+-[a-z]+-\d{4})\.\.\. done\n", out)
        assert match, out
        assert match.group(1) in run(cli, "apps").output.splitlines()
        other = json.loads(run(cli, "create", "--json").output)["name"]
        assert other != match.group(1)

    def test_destroy_takes_the_app_as_an_argument_with_confirm(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "hk-gone")
        wrong = run(cli, "apps:destroy", "hk-gone", "--confirm", "hk-other", code=1)
        assert "confirm with --confirm hk-gone" in wrong.output
        missing = run(cli, "apps:destroy", "hk-gone", code=1)
        assert "confirm with --confirm hk-gone" in missing.output
        assert "hk-gone" in run(cli, "apps").output
        out = run(cli, "apps:destroy", "hk-gone", "--confirm", "hk-gone").output
        assert out == "Destroying hk-gone (including all add-ons)... done\n"
        assert "hk-gone" not in run(cli, "apps").output.splitlines()

    def test_destroy_with_dash_a_and_an_unknown_app(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "hk-gone2")
        run(cli, "destroy", "-a", "hk-gone2", "--confirm", "hk-gone2")
        unknown = run(cli, "apps:destroy", "hk-never", "--confirm", "hk-never", code=1)
        assert "no app named 'hk-never' (app_not_found)" in unknown.output

    def test_info_shows_url_release_dynos_sleep_and_add_ons(
        self, cli: CliRunner, tmp_path: Path
    ) -> None:
        deployed(cli, "hk-info", tmp_path, "web: python -m http.server $PORT\nworker: sleep 9\n")
        run(cli, "config:set", "A=1", "B=2", "-a", "hk-info")
        result = cli.invoke(
            main, ["apps:info", "hk-info"], env={"SLIPWAY_APPS_DOMAIN": "apps.test"}
        )
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == "=== hk-info"
        fields = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        assert fields["Web URL"] == "http://hk-info.apps.test/"
        assert fields["Release"].startswith("v3 Set A, B config vars, ")
        assert fields["Dynos"] == "web: 1, worker: 0"
        assert fields["Sleeps"] == "after 5m without requests"
        assert (fields["Maintenance"], fields["Add-ons"], fields["Config vars"]) == (
            "off",
            "-",
            "2",
        )
        shown = json.loads(run(cli, "info", "-a", "hk-info", "--json").output)
        assert shown["release"]["version"] == 3

    def test_info_of_an_unknown_app_is_a_404(self, cli: CliRunner) -> None:
        assert "no app named 'hk-nope'" in run(cli, "apps:info", "-a", "hk-nope", code=1).output


class TestMaintenance:
    def test_on_and_off_are_kept_and_shown(self, cli: CliRunner, server: Server) -> None:
        run(cli, "apps:create", "hk-maint")
        assert run(cli, "maintenance", "-a", "hk-maint").output == "off\n"
        out = run(cli, "maintenance:on", "-a", "hk-maint").output
        assert out == "Enabling maintenance mode for hk-maint... done\n"
        assert run(cli, "maintenance", "-a", "hk-maint").output == "on\n"
        assert api(server, "GET", "/apps/hk-maint")[1]["maintenance"] is True
        assert "on (the router answers H80)" in run(cli, "apps:info", "-a", "hk-maint").output
        run(cli, "maintenance:off", "-a", "hk-maint")
        assert run(cli, "maintenance", "-a", "hk-maint").output == "off\n"
        audit = api(server, "GET", "/apps/hk-maint/audit")[1]
        assert [e["detail"] for e in audit if e["action"] == "app.maintenance"] == [
            {"on": True},
            {"on": False},
        ]

    def test_the_api_refuses_what_is_not_a_boolean(self, server: Server) -> None:
        api(server, "POST", "/apps", {"name": "hk-maint2"})
        status, body = api(server, "PATCH", "/apps/hk-maint2", {"maintenance": "yes"})
        assert (status, body["message"]) == (422, "maintenance must be true or false")
        status, body = api(server, "PATCH", "/apps/hk-maint2", {})
        assert status == 422
        assert api(server, "PATCH", "/apps/hk-nope", {"maintenance": True})[0] == 404


class TestReleases:
    def test_info_and_the_release_phase_output(self, cli: CliRunner, tmp_path: Path) -> None:
        deployed(
            cli,
            "hk-rel",
            tmp_path,
            "web: python -m http.server $PORT\nrelease: echo migrating; echo done >&2\n",
        )
        info = run(cli, "releases:info", "-a", "hk-rel").output.splitlines()
        assert info[0] == "=== Release v2 of hk-rel"
        assert re.fullmatch(r"Status: +succeeded \(current\)", info[1])
        assert "  web: python -m http.server $PORT" in info
        assert run(cli, "releases:output", "-a", "hk-rel").output == "migrating\ndone\n"
        assert run(cli, "releases:output", "v2", "-a", "hk-rel").output == "migrating\ndone\n"
        first = run(cli, "releases:info", "1", "-a", "hk-rel").output
        assert "Initial release" in first
        none = cli.invoke(main, ["releases:output", "v1", "-a", "hk-rel"])
        assert none.exit_code == 0
        assert "v1 has no release output: its Procfile has no release command" in none.output

    def test_unknown_and_malformed_versions_are_errors(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "hk-rel2")
        assert (
            "has no release v7" in run(cli, "releases:info", "v7", "-a", "hk-rel2", code=1).output
        )
        bad = run(cli, "releases:output", "latest", "-a", "hk-rel2", code=1)
        assert "'latest' is not a release version" in bad.output


class TestAddons:
    def test_plans_list_ours_and_take_herokus_names(self, cli: CliRunner) -> None:
        plans = json.loads(run(cli, "addons:plans", "postgres", "--json").output)
        assert [p["name"] for p in plans][:3] == [
            "postgres:mini",
            "postgres:basic",
            "postgres:standard",
        ]
        assert [p["default"] for p in plans].count(True) == 1
        assert plans[0]["limits"]["connection_limit"] == 5
        heroku = json.loads(run(cli, "addons:plans", "heroku-postgresql", "--json").output)
        assert heroku == plans
        table = run(cli, "addons:plans", "postgres").output.splitlines()
        assert table[0].split() == ["PLAN", "LIMITS"]
        assert table[1].startswith("default  postgres:mini")
        unknown = run(cli, "addons:plans", "mysql", code=1)
        assert "no 'mysql' add-on service here" in unknown.output

    def test_plans_of_an_unknown_service_are_a_404(self, server: Server) -> None:
        status, body = api(server, "GET", "/addon-services/mysql/plans")
        assert (status, body["id"]) == (404, "service_not_found")
        status, body = api(server, "GET", "/addon-services/heroku-redis/plans")
        assert status == 200
        assert all(p["name"].startswith("redis:") for p in body)

    def test_upgrade_and_downgrade_change_the_plan_in_place(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "hk-up")
        run(cli, "addons:create", "postgres:mini", "-a", "hk-up")
        name = json.loads(run(cli, "addons", "--json", "-a", "hk-up").output)[0]["name"]
        out = run(cli, "addons:upgrade", "DATABASE", "basic", "-a", "hk-up").output
        assert out == f"Changing {name} on hk-up to postgres:basic... done\n"
        moved = json.loads(
            run(cli, "addons:downgrade", name, "postgres:mini", "-a", "hk-up", "--json").output
        )
        assert moved["plan"]["name"] == "postgres:mini"
        refused = run(cli, "addons:upgrade", "DATABASE", "redis:shared", "-a", "hk-up", code=1)
        assert "needs a new add-on" in refused.output
        run(cli, "addons:destroy", name, "-a", "hk-up", "--confirm", "hk-up")

    def test_info_and_psql_reach_the_apps_database(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "hk-pg")
        run(cli, "addons:create", "heroku-postgresql:essential-0", "-a", "hk-pg")
        name = json.loads(run(cli, "addons", "--json", "-a", "hk-pg").output)[0]["name"]
        info = run(cli, "addons:info", "DATABASE", "-a", "hk-pg").output.splitlines()
        assert info[0] == f"=== {name}"
        assert re.fullmatch(r"Plan: +postgres:mini", info[1])
        assert re.fullmatch(r"Attachment: +hk-pg::DATABASE", info[2])
        assert run(cli, "addons:info", name, "-a", "hk-pg").output.splitlines()[0] == f"=== {name}"
        missing = run(cli, "addons:info", "CACHE", "-a", "hk-pg", code=1)
        assert f"no add-on 'CACHE' on this app (add-ons: {name})" in missing.output
        if shutil.which("psql") is None:
            pytest.skip("psql is not installed")
        url = run(cli, "config:get", "DATABASE_URL", "-a", "hk-pg").output.strip()
        # pg:psql execs psql, which would replace the test: run the CLI as a real process.
        env = {**os.environ, **{k: v for k, v in cli.env.items() if v is not None}}
        env.pop("SLIPWAY_APP", None)
        proc = subprocess.run(
            [SLIPWAY, "pg:psql", "-a", "hk-pg", "-c", "select current_database(), 6 * 7"],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        row = [c.strip() for c in proc.stdout.splitlines()[2].split("|")]
        assert row == [urllib.parse.urlsplit(url).path.lstrip("/"), "42"]
        assert f"--> Connecting to {name}" in proc.stderr
        run(cli, "addons:destroy", name, "-a", "hk-pg", "--confirm", "hk-pg")

    def test_psql_needs_a_postgres_add_on(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "hk-pg2")
        none = run(cli, "pg:psql", "-a", "hk-pg2", "--psql", "/bin/true", code=1)
        assert "no add-on 'DATABASE' on this app (add-ons: none)" in none.output


class TestProcesses:
    def test_ps_shows_state_columns_and_no_empty_headers(
        self, cli: CliRunner, tmp_path: Path
    ) -> None:
        deployed(cli, "hk-ps", tmp_path, "web: python -m http.server $PORT\nworker: sleep 9\n")
        shown = run(cli, "ps", "-a", "hk-ps").output.splitlines()
        assert shown == [
            "=== web (1, sleeps after 5m)",
            "(none running)",
            "Scaled to 0: worker (ps:scale TYPE=1 runs one)",
        ]

    def test_ps_stop_scales_a_type_to_zero(self, cli: CliRunner, tmp_path: Path) -> None:
        deployed(cli, "hk-stop", tmp_path, "web: python -m http.server $PORT\nworker: sleep 9\n")
        sized = run(cli, "ps:scale", "worker=2:standard-2x", "-a", "hk-stop")
        assert sized.stdout == "Scaling hk-stop... done, now running web=1, worker=2\n"
        formation = json.loads(run(cli, "ps", "--json", "-a", "hk-stop").output)["formation"]
        assert {f["type"]: f["size"] for f in formation}["worker"] == "standard-2x"
        bad = run(cli, "ps:scale", "worker=1:huge-9x", "-a", "hk-stop", code=1).output
        assert "huge-9x" in bad
        out = run(cli, "ps:stop", "worker.1", "-a", "hk-stop").output
        assert out == "Stopping worker processes of hk-stop... done (ps:scale worker=1 to start)\n"
        formation = json.loads(run(cli, "ps", "--json", "-a", "hk-stop").output)["formation"]
        assert {f["type"]: f["quantity"] for f in formation} == {"web": 1, "worker": 0}
        assert "not a process type" in run(cli, "ps:stop", "Web!", "-a", "hk-stop", code=1).output
        assert (
            "no process type 'clock'"
            in run(cli, "ps:stop", "clock", "-a", "hk-stop", code=1).output
        )

    def test_idle_time_is_set_with_durations(self, cli: CliRunner, tmp_path: Path) -> None:
        deployed(cli, "hk-idle", tmp_path, "web: python -m http.server $PORT\n")
        assert (
            run(cli, "ps:idle", "-a", "hk-idle").output
            == "hk-idle web sleeps after 5m without requests\n"
        )
        out = run(cli, "ps:idle", "15s", "-a", "hk-idle").output
        assert out == "hk-idle web now sleeps after 15s without requests\n"
        assert (
            json.loads(run(cli, "ps:idle", "1h", "-a", "hk-idle", "--json").output)["idle_after"]
            == 3600
        )
        assert "never sleeps" in run(cli, "ps:idle", "--never", "-a", "hk-idle").output
        assert "sleeps after 1m30s" in run(cli, "ps:idle", "90", "-a", "hk-idle").output
        garbage = run(cli, "ps:idle", "soon", "-a", "hk-idle", code=1)
        assert "not a duration: 'soon' (use e.g. 300, 10s, 5m, 1h)" in garbage.output
        too_long = run(cli, "ps:idle", "90d", "-a", "hk-idle", code=1)
        assert "idle_after must be a number of seconds from 1 to 2592000" in too_long.output

    def test_the_api_takes_duration_strings_and_refuses_garbage(self, server: Server) -> None:
        api(server, "POST", "/apps", {"name": "hk-idle2"})
        api(
            server,
            "POST",
            "/apps/hk-idle2/releases",
            {"artifact": "/tmp", "procfile": {"web": "true"}},
        )
        status, body = api(server, "PATCH", "/apps/hk-idle2/formation/web", {"idle_after": "5m"})
        assert (status, body["idle_after"]) == (200, 300)
        batch = {"updates": [{"type": "web", "idle_after": "15s"}]}
        status, body = api(server, "PATCH", "/apps/hk-idle2/formation", batch)
        assert (status, body[0]["idle_after"]) == (200, 15)
        for bad in ("fortnight", "5 minutes", "-5s", ""):
            status, body = api(server, "PATCH", "/apps/hk-idle2/formation/web", {"idle_after": bad})
            assert (status, body["id"]) == (422, "invalid_duration"), bad
            assert "15s, 5m, 1h" in body["message"]
        for out_of_range in ("0s", "500ms", "31d"):
            status, body = api(
                server, "PATCH", "/apps/hk-idle2/formation/web", {"idle_after": out_of_range}
            )
            assert status == 422, out_of_range
            assert body["message"].startswith("idle_after must be a number of seconds from 1")
        assert api(server, "PATCH", "/apps/hk-nope/formation/web", {"idle_after": "5m"})[0] == 404


class TestRun:
    def test_output_and_exit_code_come_back(self, cli: CliRunner, tmp_path: Path) -> None:
        deployed(cli, "hk-run", tmp_path, "web: python -m http.server $PORT\n")
        run(cli, "config:set", "GREETING=hello", "-a", "hk-run")
        (tmp_path / "tool.sh").write_text('echo "$GREETING from $(pwd)"; echo oops >&2; exit 3\n')
        result = run(cli, "run", "-a", "hk-run", "sh", "tool.sh", code=3)
        assert result.stdout == f"hello from {tmp_path}\noops\n"
        assert "Running sh tool.sh on hk-run..." in result.stderr
        assert re.search(r"^up, run\.\d+$", result.stderr, re.M)
        ok = run(cli, "run", "-a", "hk-run", "--", "echo", "-n", "fine")
        assert ok.stdout == "fine"
        # Heroku's habit: the app named after the command; before it, -a stays the command's.
        after = run(cli, "run", "echo", "after", "-a", "hk-run")
        assert after.stdout == "after\n"
        after = cli.invoke(main, ["run", "echo", "x", "--app=hk-run"], env={"SLIPWAY_APP": "no"})
        assert (after.exit_code, after.stdout) == (0, "x\n")
        kept = run(cli, "run", "-a", "hk-run", "echo", "-a", "b")
        assert kept.stdout == "-a b\n"
        silent = run(cli, "run", "-a", "hk-run", "true")
        assert (silent.stdout, "up, run." in silent.stderr) == ("", True)
        named = run(cli, "run", "-a", "hk-run", "echo", "$DYNO")
        assert re.fullmatch(r"run\.\d{4}\n", named.stdout)
        assert f"up, {named.stdout}" in named.stderr

    def test_the_release_env_has_add_on_urls_and_not_slipways(
        self, cli: CliRunner, tmp_path: Path
    ) -> None:
        deployed(cli, "hk-run2", tmp_path, "web: python -m http.server $PORT\n")
        run(cli, "addons:create", "redis:shared", "-a", "hk-run2")
        result = run(cli, "run", "-a", "hk-run2", "env")
        names = {line.partition("=")[0] for line in result.stdout.splitlines()}
        assert "REDIS_URL" in names
        assert not {n for n in names if n.startswith("SLIPWAY_")}
        addon = json.loads(run(cli, "addons", "--json", "-a", "hk-run2").output)[0]["name"]
        run(cli, "addons:destroy", addon, "-a", "hk-run2", "--confirm", "hk-run2")

    def test_detached_answers_at_once_with_the_dyno_name(
        self, cli: CliRunner, tmp_path: Path
    ) -> None:
        deployed(cli, "hk-run3", tmp_path, "web: python -m http.server $PORT\n")
        out = run(cli, "run", "--detach", "-a", "hk-run3", "touch", "ran").output
        match = re.match(r"Running touch ran on hk-run3\.\.\. up, (run\.\d{4})\n", out)
        assert match, out
        assert f"slipway logs -a hk-run3 --dyno {match.group(1)}" in out
        also = run(cli, "run:detached", "touch", "ran-too", "-a", "hk-run3").output
        assert re.match(r"Running touch ran-too on hk-run3\.\.\. up, run\.\d{4}\n", also)
        deadline = time.monotonic() + 30  # two process starts, on a loaded machine too
        while not (tmp_path / "ran").exists() or not (tmp_path / "ran-too").exists():
            assert time.monotonic() < deadline, "the detached run did not run"
            time.sleep(0.05)

    def test_an_app_token_may_not_run_unconfined_on_the_control_plane(
        self, cli: CliRunner, tmp_path: Path
    ) -> None:
        deployed(cli, "hk-run5", tmp_path, "web: python -m http.server $PORT\n")
        token = run(cli, "tokens:create", "dev", "-a", "hk-run5").output.strip()
        refused = cli.invoke(main, ["run", "-a", "hk-run5", "id"], env={"SLIPWAY_TOKEN": token})
        assert refused.exit_code == 1
        assert "one-off runs with an app token need an agent" in refused.output
        assert "(run_unconfined)" in refused.output

    def test_refusals(self, cli: CliRunner, server: Server) -> None:
        run(cli, "apps:create", "hk-run4")
        empty = run(cli, "run", "-a", "hk-run4", "ls", code=1)
        assert "hk-run4 has no code to run yet: deploy it first" in empty.output
        assert "no app named 'hk-nope'" in run(cli, "run", "-a", "hk-nope", "ls", code=1).output
        for body, status in (
            ({"command": "  "}, 422),
            ({"command": "ls", "attach": "yes"}, 422),
            ({"command": "x" * 10_001}, 422),
            ({"cmd": "ls"}, 422),
        ):
            assert api(server, "POST", "/apps/hk-run4/dynos", body)[0] == status, body


class TestBuilds:
    def test_builds_show_status_commit_time_and_duration(
        self, cli: CliRunner, tmp_path: Path
    ) -> None:
        repo = tmp_path / "repo"
        sha = commit(repo, python_app(deps=False))
        run(cli, "apps:create", "hk-builds")
        run(cli, "builds:create", "--git", str(repo), "--ref", sha, "-a", "hk-builds")
        lines = run(cli, "builds", "-a", "hk-builds").output.splitlines()
        assert lines[0] == "=== hk-builds Builds"
        assert lines[1].split() == ["ID", "STATUS", "RELEASE", "COMMIT", "CREATED", "DURATION"]
        build = json.loads(run(cli, "builds", "-a", "hk-builds", "--json").output)[0]
        row = lines[2]
        assert row.startswith(build["id"])
        assert f"succeeded  v2 succeeded  {sha}  " in row
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(\d+s ago\)  \d+s$", row), row

    def test_a_git_error_keeps_gits_own_words(self, cli: CliRunner) -> None:
        run(cli, "apps:create", "hk-nohost")
        url = "https://nowhere.invalid/shop.git"
        # The branch is resolved here first: git's message, not "exit status 128".
        resolved = run(
            cli, "builds:create", "--git", url, "--ref", "main", "-a", "hk-nohost", code=1
        )
        assert "Could not resolve host: nowhere.invalid" in resolved.output
        # A sha goes straight to the builder, whose failure says the same.
        built = run(
            cli, "builds:create", "--git", url, "--ref", "a" * 40, "-a", "hk-nohost", code=1
        )
        assert "Could not resolve host: nowhere.invalid" in built.output
