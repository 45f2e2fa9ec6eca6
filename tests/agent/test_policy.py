"""The idle policy and each app's state machine, on a faked clock (numbers, no sleeping)."""

from __future__ import annotations

import pytest

from agent.activity import Reports
from agent.apps import AppConfig
from agent.errors import ConfigError
from agent.machine import AppMachine, EventKind, Phase
from agent.policy import Policy, Seen, idle
from agent.runtime import Instance, ProcessSpec, ProcessStatus
from kit.wire import ActivityReport

FIVE_MINUTES = 300.0


def app(
    policy: Policy | None = None, *, worker: bool = False, always_on: bool = False
) -> AppConfig:
    processes = {"web": ProcessSpec("hello", "web", "python app.py")}
    if worker:
        processes["worker"] = ProcessSpec("hello", "worker", "python worker.py")
    return AppConfig(
        name="hello",
        hosts=("hello.test",),
        processes=processes,
        policy=policy or Policy(),
        always_on=frozenset({"worker"}) if always_on else frozenset(),
    )


def web(*instances: Instance, desired: int = 1) -> ProcessStatus:
    return ProcessStatus("hello", "web", desired, instances)


READY = Instance("web.1", "127.0.0.1", 5001, ready=True)
BOOTING = Instance("web.1", "127.0.0.1", 5001, ready=False)
CRASHED = Instance(
    "web.1", "127.0.0.1", 5001, ready=False, crashed=True, reason="exited with code 1"
)


class TestIdlePolicy:
    def test_an_app_sleeps_after_five_idle_minutes_by_default(self) -> None:
        seen = Seen(in_flight=0, last_seen=1000.0)
        assert not idle(Policy(), seen, awake_since=900.0, now=1000.0 + FIVE_MINUTES - 0.001)
        assert idle(Policy(), seen, awake_since=900.0, now=1000.0 + FIVE_MINUTES)

    def test_a_request_in_flight_keeps_it_awake_however_long_ago_it_started(self) -> None:
        seen = Seen(in_flight=1, last_seen=0.0)
        assert not idle(Policy(), seen, awake_since=0.0, now=10 * FIVE_MINUTES)

    def test_a_fresh_wake_gets_a_full_idle_period_before_any_request_is_reported(self) -> None:
        assert not idle(Policy(idle_after=10), Seen(), awake_since=100.0, now=109.0)
        assert idle(Policy(idle_after=10), Seen(), awake_since=100.0, now=110.0)

    def test_an_old_request_does_not_shorten_the_time_since_waking(self) -> None:
        seen = Seen(last_seen=0.0)
        assert not idle(Policy(idle_after=10), seen, awake_since=100.0, now=105.0)

    @pytest.mark.parametrize("policy", [Policy(never_sleep=True), Policy(min_scale=1)])
    def test_never_sleep_and_min_scale_keep_an_app_awake(self, policy: Policy) -> None:
        assert not idle(policy, Seen(last_seen=0.0), awake_since=0.0, now=1e9)

    def test_web_replicas_stay_within_min_and_max_scale(self) -> None:
        assert Policy().web_replicas(0) == 1
        assert Policy(max_scale=2).web_replicas(5) == 2
        assert Policy(min_scale=3, max_scale=4).web_replicas(1) == 3

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"idle_after": 0}, "idle_after must be above 0"),
            ({"idle_after": float("inf")}, "idle_after must be above 0 seconds and finite"),
            ({"idle_after": float("nan")}, "idle_after must be above 0 seconds and finite"),
            ({"boot_timeout": -1}, "boot_timeout must be above 0"),
            ({"boot_timeout": float("inf")}, "boot_timeout must be above 0 seconds and finite"),
            ({"min_scale": -1}, "min_scale must be 0 or more"),
            ({"max_scale": 0}, "max_scale must be 1 or more"),
            ({"min_scale": 3, "max_scale": 2}, "min_scale \\(3\\) is above max_scale \\(2\\)"),
            ({"max_held": -5}, "max_held must be 0 or more"),
        ],
    )
    def test_a_bad_policy_says_which_value_is_wrong(
        self, kwargs: dict[str, float], message: str
    ) -> None:
        with pytest.raises(ConfigError, match=message):
            Policy(**kwargs)  # type: ignore[arg-type]


class TestActivityFromSeveralRouters:
    def test_in_flight_adds_up_and_the_latest_request_on_any_router_counts(self) -> None:
        reports = Reports(ttl=10)
        reports.add({"router": "a", "version": 1, "apps": {"hello": _act(0, 30.0)}}, now=100.0)
        reports.add({"router": "b", "version": 1, "apps": {"hello": _act(2, 0.0)}}, now=101.0)
        assert reports.seen("hello") == Seen(in_flight=2, last_seen=101.0)

    def test_the_quietest_router_does_not_make_a_busy_app_look_idle(self) -> None:
        reports = Reports(ttl=10)
        reports.add({"router": "a", "version": 1, "apps": {"hello": _act(0, 1.0)}}, now=100.0)
        reports.add({"router": "b", "version": 1, "apps": {"hello": _act(0, 250.0)}}, now=100.0)
        assert reports.seen("hello").last_seen == 99.0

    def test_a_router_that_stops_reporting_stops_counting_after_the_ttl(self) -> None:
        reports = Reports(ttl=10)
        reports.add({"router": "a", "version": 1, "apps": {"hello": _act(3, 0.0)}}, now=100.0)
        assert reports.prune(now=110.0) == []
        assert reports.prune(now=110.5) == ["a"]
        assert reports.seen("hello").in_flight == 0
        assert reports.seen("hello").last_seen == 100.0  # what it saw is still remembered

    def test_drained_needs_every_router_on_the_new_table_with_nothing_in_flight(self) -> None:
        reports = Reports(ttl=10)
        reports.add({"router": "a", "version": 7, "apps": {"hello": _act(0, 1.0)}}, now=1.0)
        reports.add({"router": "b", "version": 6, "apps": {}}, now=1.0)
        assert not reports.drained("hello", 7)  # b still serves the table with endpoints
        reports.add({"router": "b", "version": 7, "apps": {"hello": _act(1, 0.0)}}, now=1.1)
        assert not reports.drained("hello", 7)  # b has one in flight
        reports.add({"router": "b", "version": 8, "apps": {"hello": _act(0, 0.0)}}, now=1.2)
        assert reports.drained("hello", 7)


class TestAppMachine:
    def test_a_wake_scales_web_up_once_however_often_it_is_asked(self) -> None:
        m = AppMachine(app())
        assert m.start(now=0.0) == []
        assert m.desired == {"web": 0}
        assert [e.kind for e in m.wake(now=1.0)] == [EventKind.WAKING]
        assert m.wake(now=1.1) == []
        assert m.desired == {"web": 1}
        assert m.view().state == "waking"

    def test_the_first_ready_web_process_makes_it_awake_with_its_endpoint(self) -> None:
        m = AppMachine(app())
        m.start(0.0)
        m.wake(1.0)
        assert m.observe(web(BOOTING), 1.2) == []
        events = m.observe(web(READY), 1.5)
        assert [(e.kind, e.seconds) for e in events] == [(EventKind.AWAKE, 0.5)]
        assert m.view().endpoints == (("127.0.0.1", 5001, "web.1"),)

    def test_no_ready_process_within_the_boot_timeout_is_a_boot_timeout(self) -> None:
        m = AppMachine(app(Policy(boot_timeout=60)))
        m.start(0.0)
        m.wake(10.0)
        assert m.tick(69.9, Seen(), drained=False, drain_timeout=30) == []
        events = m.tick(70.0, Seen(), drained=False, drain_timeout=30)
        assert [e.kind for e in events] == [EventKind.BOOT_TIMEOUT]
        assert m.phase is Phase.ASLEEP
        assert m.desired == {"web": 0}

    def test_a_crash_while_booting_is_published_as_crashed_with_the_reason(self) -> None:
        m = AppMachine(app())
        m.start(0.0)
        m.wake(1.0)
        events = m.observe(web(CRASHED), 1.3)
        assert [e.kind for e in events] == [EventKind.CRASHED]
        assert m.view().state == "crashed"
        assert m.view().reason == "web.1 exited with code 1"
        assert [e.kind for e in m.observe(web(READY), 2.0)] == [EventKind.RECOVERED]
        assert m.view().state == "awake"

    def test_sleep_withdraws_endpoints_first_and_stops_only_once_routers_drained(self) -> None:
        m = _awake(Policy(idle_after=300))
        assert m.tick(399.0, Seen(last_seen=100.0), drained=False, drain_timeout=30) == []
        assert [e.kind for e in m.tick(400.0, Seen(last_seen=100.0), False, 30)] == [
            EventKind.SLEEPING
        ]
        assert m.view().state == "asleep"
        assert m.view().endpoints == ()
        assert m.desired == {"web": 1}  # still running for requests already sent
        m.drain_version = 42  # the shell published the table
        assert m.tick(400.1, Seen(last_seen=100.0), drained=False, drain_timeout=30) == []
        assert [e.kind for e in m.tick(400.2, Seen(last_seen=100.0), True, 30)] == [
            EventKind.ASLEEP
        ]
        assert m.desired == {"web": 0}

    def test_a_drain_that_never_completes_stops_the_app_after_the_drain_timeout(self) -> None:
        m = _awake(Policy(idle_after=300))
        m.tick(400.0, Seen(last_seen=100.0), False, 30)
        m.drain_version = 42
        assert m.tick(429.9, Seen(last_seen=100.0), False, 30) == []
        events = m.tick(430.0, Seen(last_seen=100.0), False, 30)
        assert [(e.kind, e.reason) for e in events] == [(EventKind.ASLEEP, "drain timed out")]

    def test_a_request_during_the_drain_cancels_the_sleep_without_a_restart(self) -> None:
        m = _awake(Policy(idle_after=300))
        m.tick(400.0, Seen(last_seen=100.0), False, 30)
        assert [e.kind for e in m.wake(400.1)] == [EventKind.SLEEP_CANCELLED]
        assert m.phase is Phase.AWAKE
        assert m.view().endpoints == (("127.0.0.1", 5001, "web.1"),)
        assert m.desired == {"web": 1}

    def test_a_stale_snapshot_of_the_stopped_process_does_not_end_the_next_wake(self) -> None:
        m = _awake(Policy(idle_after=1))
        m.tick(500.0, Seen(), False, 30)
        m.drain_version = 1
        m.tick(500.1, Seen(), True, 30)
        m.retire()
        m.wake(500.2)
        assert m.observe(web(READY), 500.3) == []  # the old web.1, reported late
        fresh = Instance("web.1", "127.0.0.1", 5002, ready=True)
        assert [e.kind for e in m.observe(web(fresh), 500.5)] == [EventKind.AWAKE]

    def test_a_stale_crash_of_the_stopped_process_does_not_fail_the_next_wake(self) -> None:
        m = AppMachine(app(Policy(idle_after=10)))
        m.start(0.0)
        m.wake(1.0)
        m.observe(web(CRASHED), 1.5)
        m.tick(12.0, Seen(), False, 30)
        m.retire()
        m.wake(13.0)
        assert m.observe(web(CRASHED), 13.1) == []  # the old web.1, reported late
        assert m.phase is Phase.WAKING

    def test_a_never_sleeping_app_whose_boot_timed_out_is_woken_again(self) -> None:
        m = AppMachine(app(Policy(never_sleep=True, boot_timeout=5)))
        m.start(0.0)
        assert [e.kind for e in m.tick(5.0, Seen(), False, 30)] == [EventKind.BOOT_TIMEOUT]
        assert [e.kind for e in m.tick(5.01, Seen(), False, 30)] == [EventKind.WAKING]
        assert m.desired == {"web": 1}

    def test_a_wake_before_the_stop_was_carried_out_is_awake_at_once(self) -> None:
        m = _awake(Policy(idle_after=1))
        m.tick(500.0, Seen(), False, 30)
        m.drain_version = 1
        m.tick(500.1, Seen(), True, 30)
        assert m.desired == {"web": 0}
        events = m.wake(500.2)  # the shell never got to retire web.1
        assert [(e.kind, e.seconds) for e in events] == [
            (EventKind.WAKING, None),
            (EventKind.AWAKE, 0.0),
        ]
        assert m.view().endpoints == (("127.0.0.1", 5001, "web.1"),)

    def test_a_crashed_app_without_traffic_goes_to_sleep_and_stops_looping(self) -> None:
        m = AppMachine(app(Policy(idle_after=10)))
        m.start(0.0)
        m.wake(1.0)
        m.observe(web(CRASHED), 1.5)
        assert m.tick(11.0, Seen(last_seen=1.0), False, 30) == []
        assert [e.kind for e in m.tick(11.5, Seen(last_seen=1.0), False, 30)] == [EventKind.ASLEEP]
        assert m.desired == {"web": 0}

    def test_a_never_sleeping_app_wakes_at_start(self) -> None:
        m = AppMachine(app(Policy(never_sleep=True)))
        assert [e.kind for e in m.start(0.0)] == [EventKind.WAKING]
        assert m.desired == {"web": 1}

    def test_workers_sleep_and_wake_with_web_unless_always_on(self) -> None:
        m = AppMachine(app(worker=True))
        m.start(0.0)
        assert m.desired == {"web": 0, "worker": 0}
        m.wake(1.0)
        assert m.desired == {"web": 1, "worker": 1}
        on = AppMachine(app(worker=True, always_on=True))
        on.start(0.0)
        assert on.desired == {"web": 0, "worker": 1}


def _act(in_flight: int, idle_for: float) -> ActivityReport:
    return {"requests": 1, "in_flight": in_flight, "idle_for": idle_for}


def _awake(policy: Policy) -> AppMachine:
    m = AppMachine(app(policy))
    m.start(0.0)
    m.wake(99.0)
    m.observe(web(READY), 100.0)
    assert m.phase is Phase.AWAKE
    return m
