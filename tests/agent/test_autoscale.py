"""The autoscaling decision on recorded load shapes, on a faked clock (one sample a second).

Each shape is the summed in-flight count the routers would report; the test
replays it through ``decide`` as the agent does and reads the replicas over
time: how fast they follow a surge, and that they do not flap.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agent.activity import Reports
from agent.apps import AppConfig, load_apps
from agent.autoscale import Autoscale, Memory, Reason, Sample, average, decide, parse_autoscale
from agent.autoscaler import Autoscaler
from agent.definition import definition_json, parse_definition
from agent.errors import ConfigError
from agent.machine import AppMachine, Phase
from agent.policy import Policy
from agent.runtime import Instance, ProcessSpec, ProcessStatus
from kit.wire import ActivityReport

TARGET = Autoscale(target=10, scale_down_delay=30)


def replay(
    load: Callable[[int], float],
    seconds: int,
    *,
    config: Autoscale = TARGET,
    start: int = 1,
    low: int = 1,
    high: int = 10,
) -> tuple[list[int], list[bool], list[Reason]]:
    """Replicas, panic state and reason after each second's decision."""
    samples: list[Sample] = []
    memory, current = Memory(), start
    replicas, panicking, reasons = [], [], []
    for t in range(seconds):
        now = float(t)
        samples.append((now, load(t)))
        samples = [s for s in samples if s[0] > now - config.stable_window]
        decision = decide(config, samples, current, memory, now, low=low, high=high)
        memory, current = decision.memory, decision.desired
        replicas.append(current)
        panicking.append(decision.panicking)
        reasons.append(decision.reason)
    return replicas, panicking, reasons


def turns(replicas: list[int]) -> int:
    """Direction changes: up then down is one, up-down-up is two (flapping counts up)."""
    steps = [b - a for a, b in itertools.pairwise(replicas) if b != a]
    return sum(1 for a, b in itertools.pairwise(steps) if (a > 0) != (b > 0))


def changes(replicas: list[int]) -> int:
    return sum(1 for a, b in itertools.pairwise(replicas) if a != b)


class TestLoadShapes:
    def test_a_step_is_met_within_the_panic_window_and_then_held(self) -> None:
        replicas, panicking, _ = replay(lambda t: 5.0 if t < 30 else 50.0, 300)
        assert replicas[:30] == [1] * 30
        assert not panicking[30]  # one sample of 50 in six: 12.5, not yet twice the target
        assert panicking[31]  # 20: twice the target of one replica
        assert replicas[30 + 5] == 5, replicas[28:40]  # the panic window is full of the step
        assert set(replicas[36:]) == {5}
        assert turns(replicas) == 0

    def test_a_step_down_comes_down_one_replica_per_delay_after_the_load_left(self) -> None:
        replicas, panicking, reasons = replay(lambda t: 50.0 if t < 120 else 0.0, 600)
        assert replicas[119] == 5
        first_down = next(t for t, n in enumerate(replicas) if t > 119 and n < 5)
        # The stable average needs 5 until 50 s of zeros (5 * 10 of 60 s), then the delay.
        assert first_down >= 120 + 30
        downs = [t for t in range(1, 600) if replicas[t] < replicas[t - 1]]
        assert [replicas[t - 1] - replicas[t] for t in downs] == [1, 1, 1, 1]
        assert all(b - a >= 30 for a, b in itertools.pairwise(downs))
        assert replicas[-1] == 1
        assert not any(panicking[t] for t in downs)
        assert {reasons[t] for t in downs} == {Reason.IDLE}

    def test_a_spike_scales_up_at_once_and_nothing_comes_down_while_panicking(self) -> None:
        replicas, panicking, _ = replay(lambda t: 100.0 if 60 <= t < 63 else 5.0, 400)
        peak = max(replicas)
        assert peak >= 5
        assert replicas.index(peak) <= 63
        last_panic = max(t for t, p in enumerate(panicking) if p)
        # It started at 60 (20.8 of 6 s: twice the target of one replica); what it added never
        # met the threshold again, and a panic lasts a stable window past the last time.
        assert panicking[59:61] == [False, True]
        assert panicking[60 : last_panic + 1] == [True] * (last_panic - 59)
        assert last_panic == 60 + 60 - 1
        assert all(replicas[t] >= replicas[t - 1] for t in range(61, last_panic + 1))
        assert replicas[-1] == 1
        assert turns(replicas) == 1  # up, then down: once

    def test_a_sawtooth_does_not_flap(self) -> None:
        # 0 -> 40 in 20 s, again and again: the replicas settle on what the peaks need.
        replicas, _, _ = replay(lambda t: 2.0 * (t % 20), 900)
        assert turns(replicas) == 0, replicas
        assert changes(replicas[120:]) == 0
        assert replicas[-1] >= math.ceil(20 / 10)  # at least what the average needs

    def test_a_slow_ramp_is_followed_up_by_the_stable_window_without_panic(self) -> None:
        replicas, panicking, reasons = replay(lambda t: t / 6.0, 600)  # 0 -> 100 in 10 min
        assert not any(panicking)
        assert turns(replicas) == 0
        assert replicas == sorted(replicas)
        assert set(reasons) <= {Reason.STEADY, Reason.LOAD}
        assert replicas[-1] in (9, 10)  # the stable average lags the ramp by half a window

    def test_noisy_steady_load_changes_replicas_once_and_never_again(self) -> None:
        noise = random.Random(14)
        replicas, _, _ = replay(lambda t: max(0.0, noise.gauss(25.0, 6.0)), 1200)
        assert changes(replicas) <= 2, replicas[:90]
        assert changes(replicas[60:]) == 0
        assert replicas[-1] == 3

    @pytest.mark.parametrize("seed", range(5))
    def test_noise_near_a_replica_boundary_adds_no_replica_after_the_step(self, seed: int) -> None:
        # The bench's shape: quiet, then 10 in flight at target 4 (2.5 replicas), noisy.
        # Without the tolerance a panic's max ratchets to 4 on a noisy second, and the
        # delay takes it back a minute later.
        noise = random.Random(seed)
        replicas, _, reasons = replay(
            lambda t: 0.0 if t < 60 else max(0.0, round(noise.gauss(10.0, 2.5))),
            900,
            config=Autoscale(target=4),
        )
        assert changes(replicas) == 1
        assert replicas[-1] == 3
        assert Reason.PANIC in reasons

    def test_within_the_tolerance_nothing_is_added(self) -> None:
        # 3 replicas serve 12 at target 4; 13 is within 10%, 13.3 is not.
        for load, wanted in ((13.0, 3), (13.3, 4)):
            samples = [(float(t), load) for t in range(60)]
            d = decide(Autoscale(target=4), samples, 3, Memory(), 59.0, low=1, high=10)
            assert d.desired == wanted, load

    def test_never_above_max_nor_below_min(self) -> None:
        replicas, _, _ = replay(lambda t: 500.0 if t < 60 else 0.0, 600, low=2, high=4)
        assert max(replicas) == 4
        assert min(replicas[1:]) >= 2
        assert replicas[-1] == 2

    def test_replicas_outside_new_bounds_are_brought_within_at_once(self) -> None:
        replicas, _, reasons = replay(lambda t: 0.0, 3, start=8, low=1, high=3)
        assert replicas[0] == 3
        assert reasons[0] is Reason.BOUNDS
        replicas, _, reasons = replay(lambda t: 0.0, 3, start=0, low=2, high=3)
        assert replicas[0] == 2


class TestDelay:
    def test_the_delay_counts_from_the_last_load_not_from_the_scale_up(self) -> None:
        # KEDA #881: up at t=10, load kept until t=100; a timer from the scale-up would
        # have scaled down under load at t=40.
        config = Autoscale(target=10, stable_window=10, panic_window=2, scale_down_delay=30)
        replicas, _, _ = replay(lambda t: 30.0 if 10 <= t < 100 else 0.0, 300, config=config)
        assert replicas[99] == 3
        first_down = next(t for t in range(100, 300) if replicas[t] < 3)
        assert first_down >= 100 + 30

    def test_no_samples_changes_nothing(self) -> None:
        d = decide(TARGET, [], 3, Memory(), 100.0, low=1, high=10)
        assert (d.desired, d.reason, d.stable) == (3, Reason.STEADY, None)

    def test_average_counts_only_the_window(self) -> None:
        samples = [(0.0, 100.0), (5.0, 10.0), (6.0, 20.0)]
        assert average(samples, 2.0, 6.0) == 15.0
        assert average(samples, 2.0, 60.0) is None


@settings(max_examples=300, deadline=None)
@given(
    loads=st.lists(st.floats(0, 400, allow_nan=False), min_size=1, max_size=240),
    target=st.floats(0.5, 50),
    stable=st.integers(2, 60),
    panic_share=st.floats(0.05, 1.0),
    delay=st.integers(0, 60),
    low=st.integers(0, 5),
    span=st.integers(0, 10),
    start=st.integers(1, 15),
)
def test_any_load_stays_within_bounds_steps_down_by_one_and_never_down_in_panic(
    loads: list[float],
    target: float,
    stable: int,
    panic_share: float,
    delay: int,
    low: int,
    span: int,
    start: int,
) -> None:
    config = Autoscale(
        target=target,
        stable_window=stable,
        panic_window=max(1.0, stable * panic_share),
        scale_down_delay=delay,
    )
    high = max(1, low) + span
    samples: list[Sample] = []
    memory, current = Memory(), start
    for t, load in enumerate(loads):
        now = float(t)
        samples.append((now, load))
        was_panicking = memory.panic_since is not None
        d = decide(config, samples, current, memory, now, low=low, high=high)
        assert max(1, low) <= d.desired <= high
        if current < max(1, low) or current > high:
            assert d.reason is Reason.BOUNDS
        else:
            if was_panicking and d.panicking:
                assert d.desired >= current, "scaled down while panicking"
            if d.desired < current:
                assert d.desired == current - 1
                assert d.reason is Reason.IDLE
        memory, current = d.memory, d.desired


class TestSettings:
    def test_a_definition_parses_with_durations(self) -> None:
        found = parse_autoscale(
            {"web": {"target": 5, "stable_window": "2m", "panic_window": "6s"}}, {"web"}, "app"
        )
        assert found["web"] == Autoscale(target=5, stable_window=120, panic_window=6)

    def test_the_apps_file_takes_a_web_autoscale_table(self, tmp_path: Path) -> None:
        (tmp_path / "shop").mkdir()
        (tmp_path / "shop" / "Procfile").write_text("web: python app.py\nworker: python w.py\n")
        apps = tmp_path / "apps.toml"
        apps.write_text(
            '[apps.shop]\nhosts = ["shop.test"]\nmax_scale = 6\n'
            '[apps.shop.autoscale.web]\ntarget = 8\nscale_down_delay = "5m"\n'
        )
        (config,) = load_apps(apps)
        assert config.autoscale == {"web": Autoscale(target=8, scale_down_delay=300)}
        # The definition the control plane sends carries it both ways.
        again = parse_definition("shop", definition_json(config))
        assert again.autoscale == config.autoscale
        apps.write_text("[apps.shop]\n[apps.shop.autoscale.worker]\ntarget = 8\n")
        with pytest.raises(ConfigError, match=r"\[apps.shop\] autoscale.worker: only web"):
            load_apps(apps)

    def test_a_definition_without_autoscale_has_none(self) -> None:
        config = parse_definition("shop", {"processes": {"web": {"command": "python app.py"}}})
        assert config.autoscale == {}

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            ([], "must map a process type"),
            ({"worker": {"target": 1}}, "only web"),
            ({"clock": {"target": 1}}, "not a process type"),
            ({"web": 3}, "expected an object"),
            ({"web": {}}, "target (requests in flight per replica) is required"),
            ({"web": {"target": 1, "speed": 2}}, "unknown keys ['speed']"),
            ({"web": {"target": 0}}, "target must be above 0"),
            ({"web": {"target": 1e6}}, "at most 100000"),
            ({"web": {"target": True}}, "expected a number"),
            ({"web": {"target": 1, "panic_window": "soon"}}, "not a duration"),
            ({"web": {"target": 1, "panic_window": 90}}, "at most the stable_window"),
            ({"web": {"target": 1, "panic_threshold": 0.5}}, "panic_threshold must be in [1, 100]"),
            ({"web": {"target": 1, "scale_down_delay": -1}}, "scale_down_delay must be in"),
            ({"web": {"target": 1, "stable_window": 7200}}, "stable_window must be in"),
        ],
    )
    def test_bad_settings_say_what_is_wrong(self, raw: object, message: str) -> None:
        with pytest.raises(ConfigError) as caught:
            parse_autoscale(raw, {"web", "worker"}, "app 'shop'")
        assert message in str(caught.value)
        assert "app 'shop'" in str(caught.value)


class TestAutoscaler:
    """The shell's memory: samples summed over routers, decisions kept, counted and exposed."""

    def awake(self) -> AppMachine:
        config = AppConfig(
            name="shop",
            hosts=("shop.test",),
            processes={"web": ProcessSpec("shop", "web", "python app.py")},
            policy=Policy(max_scale=5),
            autoscale={"web": Autoscale(target=10, stable_window=10, panic_window=2)},
        )
        machine = AppMachine(config)
        machine.wake(0.0)
        ready = Instance("web.1", "127.0.0.1", 5001, ready=True)
        machine.observe(ProcessStatus("shop", "web", 1, (ready,)), 0.0)
        assert machine.phase is Phase.AWAKE
        return machine

    def test_two_routers_in_flight_are_summed_and_the_decision_is_kept(self) -> None:
        registry = CollectorRegistry()
        scaler = Autoscaler(registry, history=3, wall=lambda: 1000.0)
        reports = Reports(ttl=10)
        machine = self.awake()
        for router in ("r1", "r2"):
            reports.add(
                {"router": router, "version": 1,
                 "apps": {"shop": {"requests": 9, "in_flight": 15, "idle_for": 0.0}}},
                0.0,
            )  # fmt: skip
        changes = scaler.tick([machine], lambda app: reports.seen(app).in_flight, 1.0)
        assert [(m.name, d.desired, d.reason) for m, d in changes] == [("shop", 3, Reason.PANIC)]
        view = scaler.view("shop")
        assert view["panicking"] is True
        assert view["avg_concurrency"] == 30.0
        assert view["decisions"] == [
            {"at": 1000.0, "process": "web", "from": 1, "to": 3, "reason": "panic",
             "avg_concurrency": 30.0, "panic_concurrency": 30.0, "panicking": True},
        ]  # fmt: skip
        labels = {"app": "shop", "process": "web"}
        assert registry.get_sample_value("slipway_autoscale_desired_replicas", labels) == 3
        counted = registry.get_sample_value(
            "slipway_autoscale_decisions_total", {**labels, "reason": "panic"}
        )
        assert counted == 1

    def test_a_deleted_app_leaves_no_autoscale_series(self) -> None:
        registry = CollectorRegistry()
        scaler = Autoscaler(registry)
        machine = self.awake()
        changes = scaler.tick([machine], lambda app: 30.0, 1.0)
        assert changes  # a panic: one decision counted
        labels = {"app": "shop", "process": "web"}
        assert registry.get_sample_value("slipway_autoscale_desired_replicas", labels)
        scaler.forget("shop")
        left = [
            (family.name, sample.labels)
            for family in registry.collect()
            for sample in family.samples
            if sample.labels.get("app") == "shop"
        ]
        assert left == []

    def test_the_sample_is_each_router_s_time_average_between_reports(self) -> None:
        """``busy`` grew by 12 request-seconds over 2 s on r1 (6 on average, though its
        count at report time is 0) and r2 sends none: its count (3) is taken."""
        reports = Reports(ttl=10)

        def post(router: str, at: float, in_flight: int, busy: float | None) -> None:
            entry: ActivityReport = {"requests": 1, "in_flight": in_flight, "idle_for": 0.0}
            if busy is not None:
                entry["busy"] = busy
            reports.add({"router": router, "version": 1, "apps": {"shop": entry}}, at)

        post("r1", 10.0, 2, 100.0)
        post("r2", 10.0, 3, None)
        assert reports.load("shop") == 5.0  # first sample: the counts at report time
        post("r1", 12.0, 0, 112.0)
        assert reports.load("shop") == 6.0 + 3.0
        # No new report since: the load found then, not a rate over no time.
        assert reports.load("shop") == 9.0
        # r1 restarted (its integral went back): its count, and a new start.
        post("r1", 13.0, 1, 0.5)
        assert reports.load("shop") == 1.0 + 3.0
        post("r1", 14.0, 1, 2.5)
        assert reports.load("shop") == 2.0 + 3.0
        assert reports.load("blog") == 0.0
        # Not sampled for longer than the ttl (the app slept): its count, not a long average.
        post("r1", 24.5, 3, 40.0)
        assert reports.load("shop") == 3.0 + 3.0
        post("r1", 25.5, 3, 43.0)
        assert reports.load("shop") == 3.0 + 3.0
        # A router that stops reporting no longer counts, nor does what was kept of it.
        assert reports.prune(36.0) == ["r1", "r2"]
        assert reports.load("shop") == 0.0
        post("r1", 37.0, 4, 0.0)
        assert reports.load("shop") == 4.0

    def test_an_app_not_awake_is_sampled_but_not_decided_for(self) -> None:
        scaler = Autoscaler(CollectorRegistry())
        machine = self.awake()
        machine.phase = Phase.WAKING
        assert scaler.tick([machine], lambda app: 50, 1.0) == []
        assert scaler.view("shop")["decisions"] == []
        machine.phase = Phase.AWAKE  # the held requests it sampled are load it now meets
        (change,) = scaler.tick([machine], lambda app: 50, 2.0)
        assert change[1].desired == 5

    def test_a_wake_before_the_next_tick_does_not_meet_the_load_from_before_the_sleep(
        self,
    ) -> None:
        """The app slept and a request woke it between two ticks: no tick saw it asleep.
        The sleep itself (the agent's ASLEEP event) clears the load it had before."""
        scaler = Autoscaler(CollectorRegistry())
        machine = self.awake()
        (change,) = scaler.tick([machine], lambda app: 30, 1.0)  # a burst: three
        machine.desired["web"] = change[1].desired
        assert machine.desired["web"] == 3
        scaler.slept("shop")
        machine.desired["web"] = 1  # woken at the formation's one, by one request
        assert scaler.tick([machine], lambda app: 1, 2.0) == []
        assert scaler.view("shop")["avg_concurrency"] == 1.0

    def test_only_the_last_decisions_are_kept_and_a_forgotten_app_has_none(self) -> None:
        scaler = Autoscaler(CollectorRegistry(), history=2)
        machine = self.awake()
        loads = iter([40, 0, 0, 0])
        for t in range(1, 5):
            load = next(loads)
            for _, decision in scaler.tick([machine], lambda app: load, float(t) * 20):  # noqa: B023
                machine.desired["web"] = decision.desired
        assert len(scaler.view("shop")["decisions"]) == 2
        scaler.forget("shop")
        assert scaler.view("shop")["decisions"] == []
