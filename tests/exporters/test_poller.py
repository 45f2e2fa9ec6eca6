"""The poll loop through its Source seam, on a faked clock: bound, isolation, backoff.

The servers are real in test_postgres.py and test_redis.py; here a scripted
Source shows what the loop itself guarantees, without waiting on real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import psycopg
import pytest
import redis.exceptions

from exporters import redis_info
from exporters.collector import SnapshotStore
from exporters.errors import ErrorKind, PollError, classify
from exporters.poller import Poller
from exporters.samples import Outcome, Sample
from exporters.settings import ExporterSettings
from exporters.targets import Kind, Target
from tests.exporters.conftest import sample


class ScriptedSource:
    """Answers by target name: a value, an exception to raise, or a hang."""

    up_name = "redis_up"

    def __init__(self, script: dict[str, object]) -> None:
        self.script = script
        self.calls: list[str] = []
        self.forgotten: list[str] = []
        self.running = 0
        self.most_at_once = 0

    async def poll(self, target: Target, members: Sequence[Target]) -> dict[str, Outcome]:
        self.calls.append(target.name)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(0)  # let the others start: the bound is what stops them
            action = self.script.get(target.name, 1.0)
            if action == "hang":
                await asyncio.Event().wait()
            if isinstance(action, BaseException):
                raise action
            assert isinstance(action, float)
            return {
                target.name: Outcome(
                    [Sample("redis_up", (), 1.0), Sample("redis_connected_clients", (), action)]
                )
            }
        finally:
            self.running -= 1

    async def forget(self, name: str) -> None:
        self.forgotten.append(name)

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(source: ScriptedSource, **overrides: object) -> tuple[Poller, SnapshotStore, Clock]:
    values: dict[str, object] = {"interval": 10.0, "timeout": 0.2, "concurrency": 2}
    values.update(overrides)
    settings = ExporterSettings(kind=Kind.REDIS, targets_file=Path("unused"), **values)  # type: ignore[arg-type]
    store = SnapshotStore(kind=Kind.REDIS, families=redis_info.FAMILIES)
    clock = Clock()
    poller = Poller(source=source, store=store, settings=settings, clock=clock, wall=lambda: 5.0)
    return poller, store, clock


def targets(*names: str) -> list[Target]:
    return [Target(name=n, dsn="redis://127.0.0.1:1/0") for n in names]


class TestRound:
    async def test_no_more_than_concurrency_targets_are_polled_at_once(self) -> None:
        source = ScriptedSource({})
        poller, _, _ = make(source)
        await poller.set_targets(targets(*(f"t{i}" for i in range(10))))
        await poller.poll_once()
        assert sorted(source.calls) == sorted(f"t{i}" for i in range(10))
        assert source.most_at_once == 2

    async def test_a_crashing_mapping_is_one_target_down_not_the_round(self) -> None:
        source = ScriptedSource({"bug": ZeroDivisionError("bug in a core")})
        poller, store, _ = make(source)
        await poller.set_targets(targets("bug", "fine"))
        await poller.poll_once()
        assert sample(store, "bug", "slipway_exporter_poll_error", error="protocol") == 1
        assert sample(store, "fine", "redis_up") == 1
        assert source.forgotten == ["bug"]

    async def test_a_hanging_target_times_out_and_loses_its_connection(self) -> None:
        source = ScriptedSource({"hang": "hang"})
        poller, store, _ = make(source)
        await poller.set_targets(targets("hang", "fine"))
        async with asyncio.timeout(5):
            await poller.poll_once()
        assert sample(store, "hang", "slipway_exporter_poll_error", error="timeout") == 1
        assert sample(store, "fine", "redis_connected_clients") == 1.0
        assert source.forgotten == ["hang"]


class TestBackoffInTheLoop:
    async def test_a_failing_target_is_retried_less_and_less_often(self) -> None:
        source = ScriptedSource({"dead": PollError(ErrorKind.CONNECT)})
        poller, store, clock = make(source)
        await poller.set_targets(targets("dead", "live"))
        for _ in range(8):  # 8 ticks of 10 s
            await poller.poll_once()
            clock.now += 10.0
        assert source.calls.count("live") == 8
        assert source.calls.count("dead") == 4  # ticks 0, 1, 3, 7
        assert sample(store, "dead", "redis_up") == 0

    async def test_a_changed_target_loses_its_kept_connection_and_backoff(self) -> None:
        source = ScriptedSource({"a": PollError(ErrorKind.AUTH)})
        poller, _, _ = make(source)
        await poller.set_targets(targets("a", "b"))
        await poller.poll_once()
        source.script = {}
        await poller.set_targets([Target(name="a", dsn="redis://127.0.0.1:2/0"), *targets("b")])
        assert "a" in source.forgotten
        assert "b" not in source.forgotten
        await poller.poll_once()  # no backoff wait: it is a new target now
        assert source.calls.count("a") == 2


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (TimeoutError(), ErrorKind.TIMEOUT),
        (ConnectionRefusedError(), ErrorKind.CONNECT),
        (redis.exceptions.ConnectionError("x"), ErrorKind.CONNECT),
        (redis.exceptions.TimeoutError("x"), ErrorKind.TIMEOUT),
        (redis.exceptions.AuthenticationError("x"), ErrorKind.AUTH),
        (redis.exceptions.NoPermissionError("x"), ErrorKind.DENIED),
        (redis.exceptions.ResponseError("x"), ErrorKind.QUERY),
        (psycopg.errors.InsufficientPrivilege("x"), ErrorKind.DENIED),
        (psycopg.errors.QueryCanceled("x"), ErrorKind.TIMEOUT),
        (psycopg.OperationalError('password authentication failed for user "x"'), ErrorKind.AUTH),
        (psycopg.OperationalError("connection refused"), ErrorKind.CONNECT),
        (psycopg.errors.UndefinedTable("x"), ErrorKind.QUERY),
        (ValueError("x"), ErrorKind.PROTOCOL),
    ],
)
def test_library_errors_map_to_a_few_bounded_kinds(error: BaseException, kind: ErrorKind) -> None:
    assert classify(error) is kind


class TestSettings:
    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"interval": 0}, "interval must be positive"),
            ({"interval": 5, "timeout": 5}, "must be positive and below the interval"),
            ({"timeout": 0}, "must be positive and below the interval"),
            ({"concurrency": 0}, "concurrency must be at least 1"),
            ({"port": 70000}, "port must be 1-65535"),
            ({"long_query_seconds": 0}, "long_query_seconds must be positive"),
        ],
    )
    def test_bad_values_are_refused_with_the_reason(
        self, overrides: dict[str, float], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            ExporterSettings(kind=Kind.POSTGRES, targets_file=Path("t.toml"), **overrides)  # type: ignore[arg-type]
