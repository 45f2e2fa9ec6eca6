"""A worker type's queue through the control API: set, shown, checked field by field (422s
with the agent's own words), removed, and given to the agent in the app's definition, over
what its Procfile line shows."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.definition import parse_definition
from agent.queues import Kind
from control.agent_target import definition_of, queues_of
from control.cli import main
from tests.control.conftest import ADMIN_TOKEN, Api

PROCFILE = {"web": "python3 app.py", "worker": "python3 worker.py", "rqw": "rq worker high"}


@pytest.fixture
async def shop(api: Api, tmp_path: Path) -> Api:
    assert (await api.call("POST", "/apps", json={"name": "shop"}))[0] == 201
    status, body, _ = await api.call(
        "POST", "/apps/shop/releases", json={"artifact": str(tmp_path), "procfile": PROCFILE}
    )
    assert status == 201, body
    return api


async def test_a_queue_is_set_completed_kept_and_removed(shop: Api) -> None:
    status, worker, _ = await shop.call(
        "PATCH",
        "/apps/shop/formation/worker",
        json={"queue": {"kind": "celery", "names": ["mail"], "per_worker": 5, "max_scale": 3}},
    )
    assert status == 200, worker
    assert worker["queue"] == {
        "kind": "celery",
        "names": ["mail"],
        "url_var": "REDIS_URL",
        "query": None,
        "per_worker": 5,
        "max_scale": 3,
    }
    # What the target was told to apply: the agent's definition carries it.
    applied = shop.target.scaled[-1][1]
    assert applied.queue == worker["queue"]
    status, worker, _ = await shop.call(
        "PATCH", "/apps/shop/formation/worker", json={"quantity": 0}
    )
    assert worker["queue"]["kind"] == "celery"  # other changes keep it
    _, listed, _ = await shop.call("GET", "/apps/shop/formation")
    assert {f["type"]: f["queue"] for f in listed}["worker"]["names"] == ["mail"]
    status, worker, _ = await shop.call(
        "PATCH", "/apps/shop/formation/worker", json={"queue": None}
    )
    assert (status, worker["queue"]) == (200, None)


async def test_a_postgres_query_is_a_queue_too(shop: Api) -> None:
    query = "SELECT count(*) FROM jobs WHERE done_at IS NULL"
    status, worker, _ = await shop.call(
        "PATCH",
        "/apps/shop/formation/worker",
        json={"queue": {"kind": "postgres", "query": query}},
    )
    assert status == 200, worker
    assert (worker["queue"]["url_var"], worker["queue"]["query"]) == ("DATABASE_URL", query)


async def test_whole_numbers_sent_as_floats_are_taken(shop: Api) -> None:
    # JSON Schema's integer admits 3.0: the document says so, so the API takes it.
    status, worker, _ = await shop.call(
        "PATCH",
        "/apps/shop/formation/worker",
        json={"queue": {"kind": "sidekiq", "per_worker": 5.0, "max_scale": 3.0}},
    )
    assert status == 200, worker
    assert (worker["queue"]["per_worker"], worker["queue"]["max_scale"]) == (5, 3)


@pytest.mark.parametrize(
    ("queue", "message"),
    [
        ({"kind": "beanstalk"}, "kind must be one of rq, sidekiq, celery, bull, list, postgres"),
        ({"kind": "rq", "names": "default"}, "names must be a list of non-empty strings"),
        ({"kind": "rq", "names": [""]}, "names must be a list of non-empty strings"),
        ({"kind": "list"}, "a list source names its keys"),
        ({"kind": "rq", "url_var": ""}, "url_var must name a config var"),
        ({"kind": "postgres"}, "a postgres source needs a query returning one number"),
        ({"kind": "rq", "query": "SELECT 1"}, "only a postgres source takes a query"),
        ({"kind": "rq", "per_worker": -1}, "per_worker must be a whole number >= 0"),
        ({"kind": "rq", "per_worker": True}, "per_worker must be a whole number >= 0"),
        ({"kind": "rq", "per_worker": 10**6 + 1}, "per_worker must be at most 1000000"),
        ({"kind": "rq", "max_scale": 0}, "max_scale must be in [1, 20]"),
        ({"kind": "rq", "max_scale": 21}, "max_scale must be in [1, 20]"),
        ({"kind": "rq", "queue": "x"}, "unknown keys ['queue']"),
        ("rq:default", "expected an object"),
    ],
)
async def test_a_bad_queue_is_a_422_that_names_the_field(
    shop: Api, queue: object, message: str
) -> None:
    status, body, _ = await shop.call("PATCH", "/apps/shop/formation/worker", json={"queue": queue})
    assert status == 422, body
    assert message in body["message"]
    assert "queue of 'worker'" in body["message"]


async def test_web_takes_no_queue(shop: Api) -> None:
    status, body, _ = await shop.call(
        "PATCH", "/apps/shop/formation/web", json={"queue": {"kind": "rq"}}
    )
    assert status == 422
    assert "queue applies to worker types" in body["message"]


async def test_the_definition_has_the_set_queue_over_the_detected_one(shop: Api) -> None:
    set_queue = {"kind": "sidekiq", "names": ["critical"]}
    status, rqw, _ = await shop.call("PATCH", "/apps/shop/formation/rqw", json={"queue": set_queue})
    assert status == 200, rqw
    # What AgentTarget.scale does: the last deployment with the changed formation item.
    deployment = shop.target.deployments[-1]
    changed = shop.target.scaled[-1][1]
    formation = [changed if f.type == changed.type else f for f in deployment.formation]
    definition = definition_of(dataclasses.replace(deployment, formation=formation))
    assert definition is not None
    config = parse_definition("shop", definition)
    assert config.queues["rqw"].kind is Kind.SIDEKIQ
    assert config.queues["rqw"].names == ("critical",)
    assert "worker" not in config.queues  # `python3 worker.py`: nothing to detect, none set


def test_a_set_queue_wins_over_the_procfile_line_and_web_never_has_one() -> None:
    procfile = {"web": "rq worker", "worker": "rq worker high", "clock": "python clock.py"}
    explicit = {"clock": {"kind": "list", "names": ["ticks"]}, "web": {"kind": "rq"}}
    found = queues_of(procfile, {}, explicit)
    assert set(found) == {"worker", "clock"}
    assert found["worker"]["names"] == ["high"]
    assert found["clock"] == {"kind": "list", "names": ["ticks"]}


async def test_ps_queue_at_the_cli_sets_shows_and_removes_it(shop: Api, tmp_path: Path) -> None:
    cli = CliRunner(
        env={
            "SLIPWAY_API_URL": shop.base,
            "SLIPWAY_TOKEN": ADMIN_TOKEN,
            "SLIPWAY_APP": "shop",
            "XDG_CONFIG_HOME": str(tmp_path),
        }
    )

    async def slipway(*args: str) -> tuple[int, str]:
        # The CLI blocks: it runs in a thread while this loop serves the API.
        result = await asyncio.to_thread(cli.invoke, main, list(args))
        return result.exit_code, result.output

    code, said = await slipway("ps:queue", "worker", "rq:default,high", "--per-worker", "10")
    assert (code, said) == (
        0,
        "shop worker now wakes for jobs in rq:default,high, 10 jobs per worker up to 1\n",
    )
    code, said = await slipway("ps:queue")
    assert code == 0
    assert said.splitlines() == [
        "rqw: (from its Procfile line)",
        "worker: rq:default,high, 10 jobs per worker up to 1",
    ]
    code, said = await slipway("ps")
    assert "queue rq:default,high" in said
    code, said = await slipway("ps:queue", "worker", "postgres", "--url-var", "JOBS_DB")
    assert code == 1
    assert "a postgres source needs a query" in said
    code, said = await slipway("ps:queue", "worker", "--off")
    assert (code, said) == (
        0,
        "shop worker has no queue set (its Procfile line may still show one)\n",
    )
    code, said = await slipway("ps:queue", "worker", "rq", "--off")
    assert code != 0
    assert "not both" in said
