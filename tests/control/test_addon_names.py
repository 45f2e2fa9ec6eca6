"""Heroku's add-on names map onto slipway's services and plans by size class."""

from __future__ import annotations

import pytest

from control.addons.names import _TIERS, canonical
from control.addons.plans import (
    DEDICATED_REDIS_PLANS,
    DEFAULT_PLANS,
    POSTGRES_PLANS,
    REDIS_PLANS,
    SEARCH_PLANS,
)


@pytest.mark.parametrize(
    ("ref", "ours"),
    [
        ("heroku-postgresql:essential-0", "postgres:mini"),
        ("heroku-postgresql:hobby-dev", "postgres:mini"),
        ("heroku-postgresql:essential-2", "postgres:basic"),
        ("heroku-postgresql:premium-4", "postgres:standard"),
        ("heroku-postgresql", "postgres"),
        ("postgresql:basic", "postgres:basic"),
        ("heroku-redis:premium-0", "redis:basic"),
        ("heroku-redis:mini", "redis:mini"),
        ("heroku-redis:hobby-dev", "redis:mini"),
        ("redis:shared", "redis:shared"),
        ("postgres:mini", "postgres:mini"),
        ("redis:dedicated", "redis:dedicated"),
        ("mysql:small", "mysql:small"),
    ],
)
def test_names_map_by_size_class_and_ours_pass_through(ref: str, ours: str) -> None:
    assert canonical(ref) == ours


def test_a_tier_is_matched_whole_not_by_prefix() -> None:
    assert canonical("heroku-postgresql:essential-0\n") == "postgres:essential-0\n"


def test_every_heroku_tier_lands_on_a_plan_that_exists_and_redis_ones_on_an_instance() -> None:
    """The mapping, the plan tables and the default agree: a Heroku name never reaches the
    shared Redis, and no shared plan hides behind a dedicated one of the same name."""
    for service, _, plan in _TIERS:
        if service == "redis":
            assert plan in DEDICATED_REDIS_PLANS, plan
        elif service == "search":
            assert plan in SEARCH_PLANS, plan
        else:
            assert plan in POSTGRES_PLANS, plan
    assert DEFAULT_PLANS["redis"] == next(iter(DEDICATED_REDIS_PLANS))
    assert not set(REDIS_PLANS) & set(DEDICATED_REDIS_PLANS)
    assert all(name.startswith("shared") for name in REDIS_PLANS)
