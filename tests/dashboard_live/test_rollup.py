"""The rollup's pure core: the latency sketch, the two tiers, retention, the file."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from control.rollup import keeper
from control.rollup.sketch import RELATIVE_ERROR, Sketch
from control.rollup.store import COARSE, FINE, MAX_EVENTS, Rollup
from control.rollup.tap import RouterLineTap, TableWatcher, parse_router_line
from kit.wire import RouteTablePayload
from router.accesslog import router_line

T0 = 1_800_000_000.0  # a minute boundary (divisible by 600)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


class TestTheSketch:
    @pytest.mark.parametrize("seed", range(5))
    def test_quantiles_are_within_the_documented_error_of_the_exact_ones(self, seed: int) -> None:
        rng = random.Random(seed)
        values = [rng.lognormvariate(3.5, 1.2) + 1 for _ in range(5000)]
        sketch = Sketch()
        for v in values:
            sketch.add(v)
        for q in (0.5, 0.9, 0.95, 0.99, 1.0):
            got = sketch.quantile(q)
            assert got is not None
            want = exact(values, q)
            assert abs(got - want) / want <= RELATIVE_ERROR + 1e-9, (q, got, want)

    def test_merging_two_sketches_equals_one_sketch_of_both(self) -> None:
        rng = random.Random(7)
        a_values = [rng.uniform(1, 200) for _ in range(1000)]
        b_values = [rng.uniform(100, 5000) for _ in range(300)]
        a, b, both = Sketch(), Sketch(), Sketch()
        for v in a_values:
            a.add(v)
            both.add(v)
        for v in b_values:
            b.add(v)
            both.add(v)
        a.merge(b)
        assert a.counts == both.counts
        assert a.total == 1300
        for q in (0.5, 0.95, 0.99):
            assert a.quantile(q) == both.quantile(q)

    def test_sub_millisecond_times_answer_zero_and_an_empty_sketch_answers_none(self) -> None:
        sketch = Sketch()
        assert sketch.quantile(0.5) is None
        assert sketch.quantiles() is None
        sketch.add(0)
        assert sketch.quantile(0.99) == 0.0

    def test_round_trips_through_json(self) -> None:
        sketch = Sketch()
        for v in (0, 3, 40, 40, 900):
            sketch.add(v)
        again = Sketch.from_json(json.loads(json.dumps(sketch.to_json())))
        assert again.counts == sketch.counts
        assert again.total == 5


class TestTheTiers:
    def test_a_minute_point_counts_status_classes_codes_and_latency(self) -> None:
        rollup = Rollup()
        for i in range(10):
            rollup.request("web", now=T0 + i, status=200, ms=10 + i)
        rollup.request("web", now=T0 + 20, status=503, ms=30000, code="H12")
        rollup.request("web", now=T0 + 21, status=404, ms=2)
        rollup.request("web", now=T0 + 61, status=302, ms=5)
        points = rollup.points("web", since=T0, until=T0 + 179, step=60)
        assert [p["t"] for p in points] == [T0, T0 + 60, T0 + 120]
        first, second, third = points
        assert first["requests"] == {"2xx": 10, "3xx": 0, "4xx": 1, "5xx": 1}
        assert first["codes"] == {"H12": 1}
        assert first["latency_ms"] is not None
        assert first["latency_ms"]["p50"] == pytest.approx(
            exact([10.0 + i for i in range(10)] + [30000, 2], 0.5), rel=RELATIVE_ERROR
        )
        assert second["requests"]["3xx"] == 1
        assert third["requests"] == {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
        assert third["latency_ms"] is None

    def test_a_wider_step_merges_minutes_and_the_coarse_tier_keeps_ten_minutes(self) -> None:
        rollup = Rollup()
        for minute in range(30):
            rollup.request("web", now=T0 + minute * 60, status=200, ms=50)
        five = rollup.points("web", since=T0, until=T0 + 1799, step=300)
        assert [p["requests"]["2xx"] for p in five] == [5] * 6
        ten = rollup.points("web", since=T0, until=T0 + 1799, step=600)
        assert [p["requests"]["2xx"] for p in ten] == [10, 10, 10]

    def test_minutes_go_after_two_hours_and_ten_minutes_after_seven_days(self) -> None:
        rollup = Rollup()
        rollup.request("web", now=T0, status=200, ms=1)
        rollup.event("web", now=T0, kind="crash")
        rollup.prune(T0 + FINE[1] + 60)
        assert rollup.apps["web"].fine == {}
        assert list(rollup.apps["web"].coarse) == [int(T0)]
        rollup.prune(T0 + COARSE[1] + 600)
        assert "web" not in rollup.apps  # nothing left: the app's entry goes too

    def test_memory_is_bounded_in_apps_and_events(self) -> None:
        rollup = Rollup(max_apps=3)
        for i, app in enumerate(("a", "b", "c", "d")):
            rollup.request(app, now=T0 + i, status=200, ms=1)
        assert sorted(rollup.apps) == ["b", "c", "d"]  # the quietest went
        for i in range(MAX_EVENTS + 10):
            rollup.event("b", now=T0 + i, kind="crash")
        assert len(rollup.apps["b"].events) == MAX_EVENTS

    def test_wakes_count_with_their_time_and_show_as_events(self) -> None:
        rollup = Rollup()
        rollup.wake("web", now=T0 + 5, seconds=1.5)
        rollup.wake("web", now=T0 + 50, seconds=0.5)
        (point,) = rollup.points("web", since=T0, until=T0 + 59, step=60)
        assert point["wakes"] == 2
        assert point["wake_ms"] is not None
        assert point["wake_ms"]["max"] == pytest.approx(1500, rel=RELATIVE_ERROR)
        events = rollup.events("web", since=T0, until=T0 + 60)
        assert [(e["kind"], e.get("seconds")) for e in events] == [("wake", 1.5), ("wake", 0.5)]


class TestTheFile:
    def test_the_rollup_survives_a_save_and_load(self, tmp_path: Path) -> None:
        rollup = Rollup()
        rollup.request("web", now=T0, status=500, ms=12, code="H10")
        rollup.wake("web", now=T0 + 1, seconds=2.0)
        path = tmp_path / "rollup.json"
        keeper.save(rollup, path)
        again = keeper.load(path)
        assert again.points("web", since=T0, until=T0 + 59, step=60) == rollup.points(
            "web", since=T0, until=T0 + 59, step=60
        )
        assert again.events("web", since=T0, until=T0 + 60) == rollup.events(
            "web", since=T0, until=T0 + 60
        )

    def test_an_unreadable_file_is_set_aside_and_the_charts_start_empty(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "rollup.json"
        path.write_text('{"version": 99}')
        assert keeper.load(path).apps == {}
        assert (tmp_path / "rollup.bad").exists()
        assert not path.exists()

    async def test_the_keeper_prunes_and_writes(self, tmp_path: Path) -> None:
        rollup = Rollup()
        rollup.request("old", now=T0, status=200, ms=1)
        rollup.request("new", now=T0 + COARSE[1], status=200, ms=1)
        path = tmp_path / "rollup.json"
        await keeper.Keeper(rollup, path, clock=lambda: T0 + COARSE[1] + 1000).flush()
        assert sorted(json.loads(path.read_text())["apps"]) == ["new"]


def line(**overrides: object) -> str:
    fields: dict[str, object] = {
        "error_code": "", "error_desc": "", "method": "GET", "path": "/", "host": "h",
        "app": "web", "request_id": "r", "fwd": "1.2.3.4", "dyno": "web.1", "connect_ms": 1,
        "service_ms": 20, "status": 200, "bytes_out": 5, "protocol": "http", "wake_ms": None,
    }  # fmt: skip
    fields.update(overrides)
    return router_line(**fields)  # type: ignore[arg-type]


class TestTheTaps:
    def test_router_lines_give_status_time_and_code(self) -> None:
        assert parse_router_line(line()) == (200, 21.0, "")
        err = line(error_code="H12", error_desc="Request timeout", status=503, service_ms=30000)
        assert parse_router_line(err) == (503, 30001.0, "H12")
        assert parse_router_line(line(wake_ms=900)) == (200, 21.0, "")

    def test_a_path_cannot_forge_the_numbers(self) -> None:
        forged = line(path="/x connect=0ms service=99999ms status=500 bytes=0")
        assert parse_router_line(forged) == (200, 21.0, "")

    def test_lines_that_are_not_request_lines_are_ignored(self) -> None:
        assert parse_router_line("at=info something else") is None
        assert parse_router_line("a connect=xms service=1ms status=200") is None

    def test_the_line_tap_counts_into_the_rollup(self) -> None:
        rollup = Rollup()
        tap = RouterLineTap(rollup, clock=lambda: T0)
        tap.emit("web", line(status=404))
        tap.emit("web", "not a router line")
        (point,) = rollup.points("web", since=T0, until=T0, step=60)
        assert point["requests"]["4xx"] == 1

    def test_table_states_become_wakes_sleeps_and_crashes(self) -> None:
        now = [T0]
        rollup = Rollup()
        watch = TableWatcher(rollup, clock=lambda: now[0])

        def table(state: str, reason: str = "") -> RouteTablePayload:
            return {
                "version": 1,
                "apps": {"web": {"hosts": ["h"], "state": state, "reason": reason}},
            }

        watch(table("asleep"))  # the state at subscription: no event
        now[0] += 10
        watch(table("waking"))
        now[0] += 1.25
        watch(table("awake"))
        now[0] += 300
        watch(table("asleep"))
        now[0] += 1
        watch(table("crashed", "exit 1"))
        events = rollup.events("web", since=T0, until=now[0])
        assert [(e["kind"], e.get("seconds"), e.get("detail")) for e in events] == [
            ("wake", 1.25, None),
            ("sleep", None, ""),
            ("crash", None, "exit 1"),
        ]
