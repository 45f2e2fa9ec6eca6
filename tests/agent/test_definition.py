"""The definition wire format, pure: round trips, and every refusal names what is wrong."""

from __future__ import annotations

import pytest

from agent.apps import AppConfig
from agent.definition import definition_json, parse_definition
from agent.errors import ConfigError
from agent.policy import Policy
from agent.runtime import ProcessSpec


def config() -> AppConfig:
    env = {"A": "1"}
    return AppConfig(
        name="shop",
        hosts=("shop.localhost", "pr-3.example.com"),
        processes={
            "web": ProcessSpec("shop", "web", "gunicorn app", env, "/srv/v3", None, 3, "/health"),
            "worker": ProcessSpec("shop", "worker", "celery", env, "/srv/v3", None, 3, None),
        },
        policy=Policy(idle_after=120.0, max_scale=4),
        formation={"web": 2, "worker": 1},
        always_on=frozenset({"worker"}),
    )


def test_a_definition_round_trips() -> None:
    assert parse_definition("shop", definition_json(config())) == config()


def test_only_processes_are_required_and_the_rest_defaults() -> None:
    parsed = parse_definition("job", {"processes": {"worker": {"command": "run"}}})
    assert parsed.hosts == ()
    assert parsed.policy == Policy()
    assert parsed.processes["worker"] == ProcessSpec("job", "worker", "run")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"processes": {"web": {"command": ""}}}, "command must be a non-empty string"),
        ({"processes": {"web": {"command": "x", "port": 1}}}, "unknown keys ['port']"),
        ({"processes": {"bad name": {"command": "x"}}}, "process types are letters"),
        ({"hosts": ["a.test"], "processes": {"worker": {"command": "x"}}}, "no web process"),
        ({"processes": {"web": {"command": "x", "health_path": "up"}}}, "must start with '/'"),
        ({"release": -1, "processes": {"web": {"command": "x"}}}, "release must be"),
        ({"env": {"A": 1}, "processes": {"web": {"command": "x"}}}, "values must be strings"),
        ({"always_on": ["web"], "processes": {"web": {"command": "x"}}}, "web cannot be"),
        ({"policy": {"naps": 1}, "processes": {"web": {"command": "x"}}}, "unknown policy key"),
        ({"policy": {"never_sleep": 1}, "processes": {"web": {"command": "x"}}}, "wrong type"),
        ({"policy": {"max_held": True}, "processes": {"web": {"command": "x"}}}, "wrong type"),
        ({"hosts": ["a.test\n"], "processes": {"web": {"command": "x"}}}, "list of host names"),
        ({"hosts": ["a.test."], "processes": {"web": {"command": "x"}}}, "list of host names"),
        ({"hosts": ["a b.test"], "processes": {"web": {"command": "x"}}}, "list of host names"),
        ({"processes": {"web\n": {"command": "x"}}}, "process types are letters"),
        (
            {"policy": {"idle_after": float("inf")}, "processes": {"web": {"command": "x"}}},
            "idle_after must be above 0 seconds and finite",
        ),
    ],
)
def test_bad_definitions_say_what_is_wrong(data: dict[str, object], reason: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        parse_definition("shop", data)
    assert reason in str(info.value)


def test_an_app_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError, match="app names are lower-case letters"):
        parse_definition("shop\n", {"processes": {"web": {"command": "x"}}})


def test_hosts_are_kept_lower_case_and_wildcards_pass() -> None:
    parsed = parse_definition(
        "shop", {"hosts": ["Shop.Test", "*.apps.test"], "processes": {"web": {"command": "x"}}}
    )
    assert parsed.hosts == ("shop.test", "*.apps.test")
