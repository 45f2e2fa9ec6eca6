"""Failed sign-ins lock a key for longer and longer; the clock is passed in, never read."""

from __future__ import annotations

from control.dashboard.throttle import Throttle


def test_a_few_typos_pass_and_the_failure_reaching_the_allowance_locks() -> None:
    throttle = Throttle(allowed=3, base=2.0, cap=60.0)
    for _ in range(2):
        throttle.failed("user:a", now=100.0)
        assert throttle.retry_after("user:a", 100.0) == 0.0
    throttle.failed("user:a", now=100.0)
    assert throttle.retry_after("user:a", 100.0) == 2.0
    assert throttle.retry_after("user:a", 101.5) == 0.5
    assert throttle.retry_after("user:a", 102.0) == 0.0


def test_each_further_failure_doubles_the_lock_up_to_the_cap() -> None:
    throttle = Throttle(allowed=1, base=2.0, cap=10.0)
    waits = []
    for _ in range(5):
        throttle.failed("k", now=0.0)
        waits.append(throttle.retry_after("k", 0.0))
    assert waits == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_success_clears_the_key_and_other_keys_are_untouched() -> None:
    throttle = Throttle(allowed=1)
    throttle.failed("user:a", now=0.0)
    throttle.failed("user:b", now=0.0)
    throttle.succeeded("user:a")
    assert throttle.retry_after("user:a", 0.0) == 0.0
    assert throttle.retry_after("user:b", 0.0) > 0.0


def test_failures_older_than_the_window_are_forgotten() -> None:
    throttle = Throttle(allowed=2, window=60.0)
    throttle.failed("k", now=0.0)
    throttle.failed("k", now=61.0)  # a new window: the count starts over at 1
    assert throttle.retry_after("k", 61.0) == 0.0
    throttle.failed("k", now=62.0)
    assert throttle.retry_after("k", 62.0) > 0.0
