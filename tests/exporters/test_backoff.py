"""Backoff of a failing target, on a faked clock: no sleeps."""

from __future__ import annotations

from exporters.backoff import PollState, after_failure, after_success, backoff_delay, is_due

INTERVAL = 15.0
CAP = 300.0


class TestBackoff:
    def test_a_healthy_target_is_due_on_every_tick(self) -> None:
        state = after_success(100.0, interval=INTERVAL)
        assert not is_due(state, 100.0, interval=INTERVAL)
        assert is_due(state, 115.0, interval=INTERVAL)
        # ticks land a little early or late; half an interval of slack covers it
        assert is_due(state, 114.0, interval=INTERVAL)

    def test_a_new_target_is_due_at_once(self) -> None:
        assert is_due(PollState(), 0.0, interval=INTERVAL)

    def test_waits_double_with_each_failure_up_to_the_cap(self) -> None:
        delays = [backoff_delay(n, interval=INTERVAL, cap=CAP) for n in range(1, 8)]
        assert delays == [15.0, 30.0, 60.0, 120.0, 240.0, 300.0, 300.0]

    def test_a_failing_target_skips_ticks_until_its_wait_is_over(self) -> None:
        state = PollState()
        now = 0.0
        polled_at = []
        for _ in range(40):  # 40 ticks of 15 s = 10 minutes
            if is_due(state, now, interval=INTERVAL):
                polled_at.append(now)
                state = after_failure(state, now, interval=INTERVAL, cap=CAP)
            now += INTERVAL
        assert polled_at == [0.0, 15.0, 45.0, 105.0, 225.0, 465.0]

    def test_one_success_ends_the_backoff(self) -> None:
        state = PollState()
        for tick in range(5):
            state = after_failure(state, tick * INTERVAL, interval=INTERVAL, cap=CAP)
        state = after_success(1000.0, interval=INTERVAL)
        assert state.failures == 0
        assert is_due(state, 1015.0, interval=INTERVAL)

    def test_a_cap_below_the_interval_still_waits_one_interval(self) -> None:
        assert backoff_delay(5, interval=INTERVAL, cap=1.0) == INTERVAL
