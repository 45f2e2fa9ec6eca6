"""Queue-depth workers through the agent: real Redis, real Postgres, real worker processes.

The app sleeps (no request ever reaches it); a job pushed straight into its
queue wakes its worker, the worker does the job, and once the queue stayed
empty for ``idle_after`` the worker stops again. No router is involved.
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.apps import AppConfig
from agent.definition import parse_definition
from agent.local import LocalRuntime
from agent.queue_watch import QueueWatcher
from agent.settings import AgentSettings, LocalSettings
from tests.agent.conftest import ListSink
from tests.helpers import eventually

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Pops RQ-style jobs (``rq:queue:NAME``) one by one, marking each in ``rq:wip:NAME`` while it
#: runs, and appends each to the file in argv[2]; an RQ worker's key use, without RQ.
WORKER = """
import os, sys, time, redis
r = redis.Redis.from_url(os.environ["REDIS_URL"])
queue, done = sys.argv[1], sys.argv[2]
while True:
    item = r.blpop(f"rq:queue:{queue}", timeout=1)
    if item is None:
        continue
    r.zadd(f"rq:wip:{queue}", {item[1]: time.time()})
    time.sleep(0.2)
    with open(done, "a") as f:
        f.write(item[1].decode() + "\\n")
    r.zrem(f"rq:wip:{queue}", item[1])
"""


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def agent(registry: CollectorRegistry) -> AsyncIterator[Agent]:
    runtime = LocalRuntime(settings=LocalSettings(stop_grace=0.5), sink=ListSink())
    running = Agent(
        [],
        runtime=runtime,
        registry=registry,
        settings=AgentSettings(tick=0.01, queue_interval=0.05),
    )
    await running.start()
    yield running
    await running.stop()
    assert not running.failed.is_set()


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def worker_app(tmp_path: Path, queue: str, **overrides: Any) -> dict[str, Any]:
    (tmp_path / "worker.py").write_text(WORKER)
    body: dict[str, Any] = {
        "env": {"REDIS_URL": REDIS_URL},
        "processes": {
            "worker": {
                "command": f"exec {sys.executable} worker.py {queue} {tmp_path / 'done'}",
                "cwd": str(tmp_path),
            }
        },
        "formation": {"worker": 1},
        "policy": {"idle_after": 1.0},
        "queues": {"worker": {"kind": "rq", "names": [queue]}},
    }
    body.update(overrides)
    return body


def waiting(registry: CollectorRegistry) -> float | None:
    """The watcher's last reading of the worker's queue (None before the first)."""
    labels = {"app": "jobs", "process_type": "worker", "state": "waiting"}
    return registry.get_sample_value("slipway_queue_jobs", labels)


def workers(agent: Agent, app: str = "jobs") -> int:
    status = agent.status(app)["processes"]["worker"]
    return len(status["instances"])


async def test_a_job_queued_while_the_app_sleeps_wakes_its_worker_which_sleeps_after(
    agent: Agent,
    registry: CollectorRegistry,
    redis: aioredis.Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = f"heroenv-{secrets.token_hex(4)}"
    caplog.set_level(logging.INFO, logger="agent.queue_watch")
    await agent.define(parse_definition("jobs", worker_app(tmp_path, queue)))
    assert agent.status("jobs")["state"] == "asleep"
    await eventually(lambda: waiting(registry) == 0)
    assert workers(agent) == 0  # an empty queue wakes nothing
    try:
        await redis.rpush(f"rq:queue:{queue}", "job-1", "job-2")
        await eventually(lambda: (tmp_path / "done").exists()
                         and (tmp_path / "done").read_text() == "job-1\njob-2\n")  # fmt: skip
        assert agent.status("jobs")["state"] == "asleep"  # web never woke: there is none
        woke = [r for r in caplog.records if r.getMessage() == "workers scaled by queue"]
        assert [(r.__dict__["replicas"], r.__dict__["reason"]) for r in woke][:1] == [
            (1, "jobs queued")
        ]
        assert (
            registry.get_sample_value(
                "slipway_queue_scale_decisions_total",
                {"app": "jobs", "process_type": "worker", "direction": "up"},
            )
            == 1
        )
        await eventually(lambda: workers(agent) == 0)  # idle_after 1 s, then stopped
        assert agent.status("jobs")["processes"]["worker"]["queue"] == {
            "workers": 0,
            "waiting": 0,
            "running": 0,
            "error": None,
        }
        slept = [r for r in caplog.records if r.getMessage() == "workers scaled by queue"]
        assert (slept[-1].__dict__["replicas"], slept[-1].__dict__["reason"]) == (
            0,
            "queue empty and workers idle",
        )
    finally:
        await redis.delete(f"rq:queue:{queue}", f"rq:wip:{queue}")


async def test_a_deleted_app_leaves_no_queue_series_behind(
    agent: Agent, registry: CollectorRegistry, redis: aioredis.Redis, tmp_path: Path
) -> None:
    queue = f"mask-{secrets.token_hex(4)}"
    await agent.define(parse_definition("jobs", worker_app(tmp_path, queue)))
    try:
        await redis.rpush(f"rq:queue:{queue}", "job-1")
        up = {"app": "jobs", "process_type": "worker", "direction": "up"}
        await eventually(
            lambda: registry.get_sample_value("slipway_queue_scale_decisions_total", up), 10
        )
        assert waiting(registry) is not None
        await agent.forget("jobs")
        for _ in range(3):  # polls after the deletion put nothing back
            await agent.queues.poll(0.0)
        left = [
            (family.name, sample.labels)
            for family in registry.collect()
            for sample in family.samples
            if sample.labels.get("app") == "jobs"
        ]
        assert left == []
    finally:
        await redis.delete(f"rq:queue:{queue}", f"rq:wip:{queue}")


async def test_a_postgres_query_is_a_source_too(
    agent: Agent, registry: CollectorRegistry, tmp_path: Path
) -> None:
    table = f"heroenv_jobs_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        await conn.execute(f"CREATE TABLE {table} (id int)")
        try:
            body = worker_app(
                tmp_path,
                "unused",
                env={"DATABASE_URL": PG_DSN, "REDIS_URL": REDIS_URL},
                queues={"worker": {"kind": "postgres", "query": f"SELECT count(*) FROM {table}"}},
            )
            await agent.define(parse_definition("jobs", body))
            await eventually(lambda: waiting(registry) == 0)
            assert workers(agent) == 0
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
            await eventually(lambda: workers(agent) == 1)
            await conn.execute(f"DELETE FROM {table}")
            await eventually(lambda: workers(agent) == 0)
        finally:
            await conn.execute(f"DROP TABLE {table}")


async def test_a_source_that_cannot_be_read_is_logged_once_and_changes_nothing(
    agent: Agent, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.queue_watch")
    body = worker_app(tmp_path, "q", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    await agent.define(parse_definition("jobs", body))
    await eventually(
        lambda: any(r.getMessage().startswith("queue cannot be read") for r in caplog.records)
    )
    polls = 10
    for _ in range(polls):  # several more polls, all failing
        await agent.queues.poll(0.0)
    failures = [r for r in caplog.records if r.getMessage().startswith("queue cannot be read")]
    assert len(failures) == 1
    assert failures[0].__dict__["error"] == "ConnectionError"
    assert workers(agent) == 0
    assert agent.status("jobs")["processes"]["worker"]["queue"] == {
        "workers": 0,
        "waiting": None,
        "running": None,
        "error": "ConnectionError",
    }


async def test_a_watcher_that_dies_stops_the_agent_rather_than_freeze_workers(
    registry: CollectorRegistry,
) -> None:
    """The watcher is a task of the agent's task set: its failure is noticed, not swallowed."""
    runtime = LocalRuntime(settings=LocalSettings(stop_grace=0.5), sink=ListSink())
    agent = Agent(
        [], runtime=runtime, registry=registry, settings=AgentSettings(queue_interval=0.01)
    )

    def broken() -> list[AppConfig]:
        raise RuntimeError("the app list is gone")

    agent.queues = QueueWatcher(
        apps=broken, demand=agent.queue_demand, registry=CollectorRegistry()
    )
    await agent.start()
    try:
        await eventually(agent.failed.is_set)
    finally:
        await agent.stop()
