"""Queue-depth workers, the pure part: sources, Procfile detection, and the decision on a clock."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.apps import AppConfig, parse_apps
from agent.errors import ConfigError
from agent.queues import (
    Depth,
    Kind,
    Measure,
    Op,
    QueueSource,
    QueueState,
    decide,
    detect,
    parse_source,
)
from control.agent_target import queues_of


class TestSources:
    @pytest.mark.parametrize(
        ("source", "measures"),
        [
            (
                QueueSource(Kind.RQ),
                [Measure(Op.LLEN, "rq:queue:default"), Measure(Op.ZCARD, "rq:wip:default", True)],
            ),
            (QueueSource(Kind.SIDEKIQ, names=("mail",)), [Measure(Op.LLEN, "queue:mail")]),
            (
                QueueSource(Kind.CELERY),
                [Measure(Op.LLEN, "celery"), Measure(Op.HLEN, "unacked", True)],
            ),
            (
                QueueSource(Kind.BULL, names=("video",)),
                [Measure(Op.LLEN, "bull:video:wait"), Measure(Op.LLEN, "bull:video:active", True)],
            ),
            (QueueSource(Kind.LIST, names=("jobs",)), [Measure(Op.LLEN, "jobs")]),
            (QueueSource(Kind.POSTGRES, query="select 1"), []),
        ],
    )
    def test_each_library_is_read_by_its_own_key_names(
        self, source: QueueSource, measures: list[Measure]
    ) -> None:
        assert source.measures() == measures

    def test_a_source_round_trips_through_its_wire_form(self) -> None:
        source = QueueSource(Kind.RQ, names=("high", "low"), url_var="CACHE_URL", per_worker=5,
                             max_scale=3)  # fmt: skip
        assert parse_source(source.wire(), "q") == source

    @pytest.mark.parametrize(
        ("raw", "says"),
        [
            ({"kind": "kafka"}, "kind must be one of rq, sidekiq"),
            ({"kind": "rq", "colour": 1}, "unknown keys ['colour']"),
            ({"kind": "rq", "names": "default"}, "names must be a list"),
            ({"kind": "list"}, "a list source names its keys"),
            ({"kind": "postgres"}, "needs a query"),
            ({"kind": "rq", "query": "select 1"}, "only a postgres source takes a query"),
            ({"kind": "rq", "per_worker": -1}, "per_worker must be a whole number"),
            ({"kind": "rq", "max_scale": 0}, "max_scale must be in [1, 20]"),
            ({"kind": "rq", "max_scale": True}, "max_scale must be a whole number"),
            ({"kind": "rq", "url_var": ""}, "url_var must name a config var"),
            ("rq", "expected an object"),
        ],
    )
    def test_a_bad_source_says_what_is_wrong(self, raw: object, says: str) -> None:
        with pytest.raises(ConfigError) as info:
            parse_source(raw, "app 'a' queues.worker")
        assert says in str(info.value)
        assert str(info.value).startswith("app 'a' queues.worker: ")


class TestDetection:
    @pytest.mark.parametrize(
        ("command", "env", "found"),
        [
            ("rq worker --url $REDIS_URL", {}, QueueSource(Kind.RQ)),
            ("rq worker", {}, QueueSource(Kind.RQ)),
            ("rq worker", {"RQ_REDIS_URL": "x"}, QueueSource(Kind.RQ, url_var="RQ_REDIS_URL")),
            (
                "exec rq worker -u ${CACHE_URL} --name w1 high low",
                {},
                QueueSource(Kind.RQ, names=("high", "low"), url_var="CACHE_URL"),
            ),
            (
                "rq worker --with-scheduler --url=$REDIS_URL emails",
                {},
                QueueSource(Kind.RQ, names=("emails",)),
            ),
            ("celery -A proj worker --loglevel=info", {}, QueueSource(Kind.CELERY)),
            ("celery -A proj worker -Q a,b", {}, QueueSource(Kind.CELERY, names=("a", "b"))),
            (
                "bundle exec sidekiq -q critical,2 -q default",
                {},
                QueueSource(Kind.SIDEKIQ, names=("critical", "default")),
            ),
            ("python worker.py", {}, None),
            ("rq info", {}, None),
            ("celery -A proj beat", {}, None),
            ("rq worker 'unbalanced", {}, None),
        ],
    )
    def test_usual_procfile_worker_lines_name_their_queue(
        self, command: str, env: dict[str, str], found: QueueSource | None
    ) -> None:
        assert detect(command, env) == found


RQ = QueueSource(Kind.RQ)
SCALED = QueueSource(Kind.RQ, per_worker=10, max_scale=3)
IDLE = 300.0


def run(source: QueueSource, readings: Sequence[tuple[float, Depth | None]]) -> list[int]:
    """Replicas after each reading, from nothing asked."""
    state = QueueState()
    out = []
    for now, depth in readings:
        decision = decide(source, depth, state, idle_after=IDLE, now=now)
        state = decision.state
        out.append(decision.replicas)
    return out


class TestDecision:
    def test_a_queued_job_wakes_one_worker_at_once(self) -> None:
        decision = decide(RQ, Depth(1), QueueState(), idle_after=IDLE, now=10.0)
        assert (decision.replicas, decision.reason) == (1, "jobs queued")
        assert decision.state == QueueState(1, 10.0)

    def test_the_worker_sleeps_only_once_the_queue_was_empty_and_idle_for_idle_after(
        self,
    ) -> None:
        readings: list[tuple[float, Depth | None]] = [
            (0, Depth(3)), (1, Depth(0, running=1)), (2, Depth(0)), (300.5, Depth(0)),
            (302, Depth(0)),
        ]  # fmt: skip
        assert run(RQ, readings) == [1, 1, 1, 1, 0]
        last = decide(RQ, Depth(0), QueueState(1, 1.0), idle_after=IDLE, now=301.0)
        assert (last.replicas, last.reason) == (0, "queue empty and workers idle")

    def test_a_long_running_job_keeps_its_worker_past_idle_after(self) -> None:
        readings = [(float(t), Depth(0, running=1)) for t in range(0, 1000, 100)]
        assert run(RQ, [(0.0, Depth(1)), *readings]) == [1] * 11

    def test_depth_asks_for_workers_up_to_max_and_never_fewer_while_work_remains(
        self,
    ) -> None:
        readings: list[tuple[float, Depth | None]] = [
            (0, Depth(5)), (1, Depth(25)), (2, Depth(95)), (3, Depth(4, running=3)),
            (4, Depth(0, running=1)), (5, Depth(0)), (306, Depth(0)),
        ]  # fmt: skip
        assert run(SCALED, readings) == [1, 3, 3, 3, 3, 3, 0]

    def test_a_sawtooth_within_idle_after_never_flaps(self) -> None:
        readings = [(float(t), Depth(t // 10 % 2)) for t in range(0, 600, 10)]
        decisions = run(RQ, readings)
        assert decisions[0] == 0
        assert set(decisions[1:]) == {1}  # up once, then steady: no stop between jobs

    def test_an_unreadable_source_changes_nothing(self) -> None:
        state = QueueState(2, 0.0)
        decision = decide(RQ, None, state, idle_after=IDLE, now=10_000.0)
        assert (decision.replicas, decision.reason, decision.state) == (2, "", state)


class TestTheAppsFile:
    def apps(self, tmp_path: Path, procfile: str, **entry: object) -> AppConfig:
        (tmp_path / "shop").mkdir()
        (tmp_path / "shop" / "Procfile").write_text(procfile)
        [config] = parse_apps({"apps": {"shop": entry}}, base=tmp_path, source="apps.toml")
        return config

    def test_a_usual_worker_line_brings_its_queue(self, tmp_path: Path) -> None:
        config = self.apps(tmp_path, "web: gunicorn app:app\nworker: rq worker high\n")
        assert config.queues == {"worker": QueueSource(Kind.RQ, names=("high",))}

    def test_a_queues_table_says_it_explicitly(self, tmp_path: Path) -> None:
        config = self.apps(
            tmp_path,
            "worker: node worker.js\n",
            queues={"worker": {"kind": "bull", "names": ["video"]}},
        )
        assert config.queues == {"worker": QueueSource(Kind.BULL, names=("video",))}

    def test_a_queue_for_no_worker_is_an_error_naming_it(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"queues.clock must name a worker"):
            self.apps(tmp_path, "web: x\n", queues={"clock": {"kind": "rq"}})


def test_the_control_plane_gives_each_usual_worker_line_its_queue() -> None:
    """A Heroku app's Procfile says nothing about queues; its worker lines are enough."""
    procfile = {
        "web": "rq worker",  # web is never woken by a queue, whatever it runs
        "worker": "rq worker --url $REDIS_URL high",
        "clock": "python clock.py",
    }
    assert queues_of(procfile, {}) == {
        "worker": QueueSource(Kind.RQ, names=("high",)).wire(),
    }
    assert queues_of({"web": "gunicorn app:app"}, {}) == {}
