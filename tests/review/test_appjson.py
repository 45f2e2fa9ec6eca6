"""app.json as a review app reads it: environments.review over the top level."""

from __future__ import annotations

import json

import pytest

from control.review.appjson import Addon, AddonKind, Generated, parse_app_json
from control.review.errors import AppJsonError

FULL = {
    "name": "hello-world",
    "env": {
        "LOG_LEVEL": "info",
        "SECRET_KEY": {"description": "signs sessions", "generator": "secret"},
        "SENTRY_DSN": {"description": "optional", "required": False},
        "WEB_CONCURRENCY": {"value": "2"},
    },
    "addons": ["heroku-postgresql:essential-0", "heroku-redis"],
    "scripts": {"postdeploy": "python manage.py migrate", "pr-predestroy": "python dump.py"},
    "environments": {
        "review": {
            "env": {"LOG_LEVEL": "debug", "REVIEW": "true"},
            "addons": [{"plan": "heroku-postgresql", "as": "DATABASE"}],
            "scripts": {"postdeploy": "python manage.py seed"},
        }
    },
}


def test_the_review_environment_overrides_env_addons_and_postdeploy() -> None:
    config = parse_app_json(json.dumps(FULL))

    assert dict(config.env) == {
        "LOG_LEVEL": "debug",
        "SECRET_KEY": Generated("secret"),
        "WEB_CONCURRENCY": "2",
        "REVIEW": "true",
    }
    assert config.addons == (Addon(AddonKind.POSTGRES, plan=None, alias="DATABASE"),)
    assert config.postdeploy == "python manage.py seed"
    assert config.predestroy == "python dump.py"


def test_without_a_review_environment_the_top_level_applies() -> None:
    config = parse_app_json(json.dumps({k: v for k, v in FULL.items() if k != "environments"}))

    assert config.addons == (
        Addon(AddonKind.POSTGRES, plan="essential-0", alias=None),
        Addon(AddonKind.REDIS, plan=None, alias=None),
    )
    assert config.postdeploy == "python manage.py migrate"
    assert config.env["LOG_LEVEL"] == "info"


def test_an_empty_app_json_configures_nothing() -> None:
    config = parse_app_json("{}")
    assert (dict(config.env), config.addons, config.postdeploy, config.predestroy) == (
        {},
        (),
        None,
        None,
    )


def test_a_postdeploy_object_with_a_command_is_accepted() -> None:
    text = json.dumps({"scripts": {"postdeploy": {"command": "./seed", "size": "basic"}}})
    assert parse_app_json(text).postdeploy == "./seed"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{not json", "app.json is not valid JSON"),
        ("[]", "must hold a JSON object"),
        ({"env": []}, "env must be an object"),
        ({"env": {"1BAD": "x"}}, "'1BAD' is not a valid config var name"),
        ({"env": {"A": 1}}, r"env\.A must be a string or an object"),
        ({"env": {"A": {"value": 3}}}, r"env\.A\.value must be a string"),
        ({"env": {"A": {"generator": "uuid"}}}, "only the 'secret' generator"),
        ({"env": {"TOKEN": {"description": "x"}}}, r"env\.TOKEN is required but has no value"),
        ({"addons": "heroku-postgresql"}, "addons must be a list"),
        ({"addons": ["mongolab"]}, r"addons\[0\]: add-on 'mongolab' is not provided here"),
        ({"addons": [{"as": "DB"}]}, r"addons\[0\] must be a plan name or an object"),
        ({"addons": [{"plan": "postgres", "as": "db"}]}, "UPPER_CASE attachment name"),
        ({"scripts": {"postdeploy": ""}}, r"scripts\.postdeploy must be a non-empty command"),
        ({"scripts": []}, r"app\.json\.scripts must be an object"),
        ({"environments": {"review": []}}, r"environments\.review must be an object"),
        (
            {"environments": {"review": {"addons": ["heroku-kafka"]}}},
            r"environments\.review\.addons\[0\]: add-on 'heroku-kafka'",
        ),
    ],
)
def test_invalid_app_json_is_refused_saying_where(doc: object, message: str) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(AppJsonError, match=message):
        parse_app_json(text)
