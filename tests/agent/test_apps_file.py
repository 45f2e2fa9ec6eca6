"""The apps file and Procfiles: what they run, and a clear error for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.activity import parse_post
from agent.apps import load_apps, parse_procfile
from agent.errors import ConfigError
from control.cli import main

EXAMPLES = Path(__file__).parents[2] / "examples"


def write(tmp_path: Path, toml: str, procfile: str = "web: python app.py\n") -> Path:
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "Procfile").write_text(procfile)
    path = tmp_path / "apps.toml"
    path.write_text(toml)
    return path


def test_the_example_apps_file_runs_the_demo_app_on_hello_localhost() -> None:
    [hello] = load_apps(EXAMPLES / "apps.toml")
    assert hello.name == "hello"
    assert hello.hosts == ("hello.localhost",)
    assert hello.processes["web"].command == "python3 app.py"
    assert hello.processes["web"].cwd == str((EXAMPLES / "hello").resolve())
    assert hello.policy.idle_after == 300
    assert hello.policy.boot_timeout == 60


def test_idle_after_from_the_command_line_overrides_every_app(tmp_path: Path) -> None:
    path = write(tmp_path, '[apps.hello]\nhosts = ["h.test"]\nidle_after = "5m"\n')
    [hello] = load_apps(path, idle_after=10.0)
    assert hello.policy.idle_after == 10.0


def test_policy_defaults_and_per_app_values_merge(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[defaults]\nidle_after = "1m"\nmax_held = 5\n'
        '[apps.hello]\nhosts = ["h.test"]\nboot_timeout = 20\nnever_sleep = true\n',
    )
    [hello] = load_apps(path)
    assert (hello.policy.idle_after, hello.policy.max_held) == (60.0, 5)
    assert (hello.policy.boot_timeout, hello.policy.never_sleep) == (20.0, True)


def test_a_procfile_lists_process_types_and_skips_comments() -> None:
    text = "# processes\nweb: python app.py --port $PORT\n\nworker: python worker.py\n"
    assert parse_procfile(text) == {
        "web": "python app.py --port $PORT",
        "worker": "python worker.py",
    }


@pytest.mark.parametrize(
    ("procfile", "message"),
    [
        ("web python app.py\n", r"Procfile:1: expected 'name: command'"),
        ("web:\n", r"Procfile:1: expected 'name: command'"),
        ("web: a\nweb: b\n", r"Procfile:2: process type 'web' appears twice"),
        ("# nothing\n", r"Procfile: no processes"),
    ],
)
def test_a_bad_procfile_names_the_line(procfile: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_procfile(procfile)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[apps.hello]\nhost = ['h.test']\n", r"unknown keys \['host'\]"),
        ("[apps.hello]\nidle_after = 'soon'\n", r"idle_after: not a duration: 'soon'"),
        ("[apps.hello]\nidle_after = 0\n", r"idle_after must be above 0"),
        ("[apps.hello]\nhosts = 'h.test'\n", r"hosts must be a list of host names"),
        ("[apps.hello]\nmin_scale = true\n", r"min_scale must be a whole number"),
        ("[apps.hello]\nformation = { clock = 1 }\n", r"formation names 'clock'"),
        ("[apps.hello]\nhealth_path = 'up'\n", r"health_path must be a path starting with '/'"),
        ("[apps.hello]\nalways_on = ['web']\n", r"web cannot be always_on"),
        ("[apps.Hello]\n", r"app names are lower-case"),
        ("[app.hello]\n", r"unknown top-level keys \['app'\]"),
        ("[defaults]\nhosts = []\n", r"\[defaults\] takes policy keys only"),
        ("", r"no apps"),
        ("[apps.hello\n", r"not valid TOML"),
        (
            "[apps.hello]\nhosts = ['h.test']\n"
            "[apps.other]\ndirectory = 'hello'\nhosts = ['h.test']\n",
            r"host 'h.test' is claimed by apps 'hello' and 'other'",
        ),
    ],
)
def test_a_bad_apps_file_names_the_app_and_the_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_apps(write(tmp_path, toml))


def test_a_missing_procfile_or_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read apps file .*nope.toml"):
        load_apps(tmp_path / "nope.toml")
    path = tmp_path / "apps.toml"
    path.write_text("[apps.hello]\n")
    with pytest.raises(ConfigError, match=r"\[apps.hello\]: cannot read .*Procfile"):
        load_apps(path)


def test_hosts_need_a_web_process(tmp_path: Path) -> None:
    path = write(tmp_path, "[apps.hello]\nhosts = ['h.test']\n", procfile="worker: x\n")
    with pytest.raises(ConfigError, match=r"has hosts but .* has no web process"):
        load_apps(path)


def test_slipway_up_refuses_a_bad_apps_file_with_the_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "[apps.hello]\nidle_after = 'soon'\n")
    result = CliRunner().invoke(main, ["up", str(path)])
    assert result.exit_code == 1
    assert "idle_after: not a duration: 'soon'" in result.output


def test_slipway_up_refuses_a_bad_idle_after_flag(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["up", str(tmp_path / "x.toml"), "--idle-after", "soon"])
    assert result.exit_code == 2
    assert "not a duration" in result.output


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object"),
        ({"version": 1, "apps": {}}, "router must be a non-empty string"),
        ({"router": "r", "version": "1", "apps": {}}, "version must be"),
        ({"router": "r", "version": 1, "apps": []}, "apps must be an object"),
        ({"router": "r", "version": 1, "apps": {"a": 1}}, "apps.a must be an object"),
        (
            {"router": "r", "version": 1, "apps": {"a": {"requests": -1, "in_flight": 0}}},
            "requests and in_flight must be whole numbers",
        ),
        (
            {"router": "r", "version": 1, "apps": {"a": {"requests": 1, "in_flight": 0}}},
            "idle_for must be seconds",
        ),
        *(
            (
                {
                    "router": "r",
                    "version": 1,
                    "apps": {"a": {"requests": 1, "in_flight": 0, "idle_for": 0, "busy": bad}},
                },
                "busy must be request-seconds >= 0",
            )
            for bad in (-1, "3", True, float("nan"), float("inf"), None)
        ),
    ],
)
def test_a_malformed_activity_report_is_refused_with_the_reason(body: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_post(body)
