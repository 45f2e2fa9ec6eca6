"""The holder: which requests may wait for their app to wake, and how many do (pure)."""

from __future__ import annotations

from router.holder import Holder


def test_requests_are_admitted_up_to_the_apps_limit_and_refused_past_it() -> None:
    holder = Holder()
    assert [holder.admit("hello", 2) for _ in range(3)] == [True, True, False]
    assert holder.counts() == {"hello": 2}


def test_a_released_request_makes_room_for_the_next() -> None:
    holder = Holder()
    assert holder.admit("hello", 1)
    assert not holder.admit("hello", 1)
    holder.release("hello")
    assert holder.admit("hello", 1)


def test_each_app_has_its_own_bound() -> None:
    holder = Holder()
    assert holder.admit("a", 1)
    assert holder.admit("b", 1)
    assert not holder.admit("a", 1)
    assert holder.counts() == {"a": 1, "b": 1}


def test_a_limit_of_zero_holds_nothing() -> None:
    holder = Holder()
    assert not holder.admit("hello", 0)
    assert holder.counts() == {}


def test_an_app_whose_requests_all_went_through_reads_zero_not_absent() -> None:
    holder = Holder()
    holder.admit("hello", 5)
    holder.release("hello")
    assert holder.counts() == {"hello": 0}


def test_the_counts_are_a_copy_a_reader_cannot_change() -> None:
    holder = Holder()
    holder.admit("hello", 5)
    holder.counts()["hello"] = 99
    assert holder.counts() == {"hello": 1}
