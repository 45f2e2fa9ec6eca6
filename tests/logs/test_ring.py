"""Rings and subscribers without any I/O: history, resume arithmetic, bounded queues."""

from __future__ import annotations

from logs.model import LogLine, Source
from logs.ring import Filter, Gap, Hub, Missed


def fill(hub: Hub, n: int, app: str = "shop", process: str = "web.1") -> None:
    for i in range(n):
        hub.append(app, 1000.0 + i, Source.APP, process, f"line {i}")


class TestSequenceNumbers:
    def test_each_app_counts_from_the_base_on_its_own(self) -> None:
        hub = Hub(seq_base=100)
        a = hub.append("a", 1.0, Source.APP, "web.1", "x")
        b = hub.append("b", 1.0, Source.APP, "web.1", "y")
        a2 = hub.append("a", 1.0, Source.APP, "web.1", "z")
        assert (a.seq, b.seq, a2.seq) == (100, 100, 101)

    def test_the_ring_keeps_only_the_newest_lines(self) -> None:
        hub = Hub(lines=5)
        fill(hub, 12)
        lines, _ = hub.history("shop", Filter(), lines=100)
        assert [line.seq for line in lines] == [8, 9, 10, 11, 12]


class TestResume:
    def test_after_an_id_in_the_buffer_gives_exactly_the_newer_lines(self) -> None:
        hub = Hub(lines=10)
        fill(hub, 8)
        lines, missed = hub.history("shop", Filter(), lines=0, after=5)
        assert [line.seq for line in lines] == [6, 7, 8]
        assert missed is None

    def test_after_an_id_that_fell_out_says_how_many_were_missed(self) -> None:
        hub = Hub(lines=5)
        fill(hub, 20)
        lines, missed = hub.history("shop", Filter(), lines=0, after=10)
        assert missed == Missed(5)
        assert [line.seq for line in lines] == [16, 17, 18, 19, 20]

    def test_after_an_id_from_before_a_restart_says_the_count_is_unknown(self) -> None:
        hub = Hub(seq_base=1_000_000)
        fill(hub, 3)
        _, missed = hub.history("shop", Filter(), lines=0, after=5)
        assert missed == Missed(None)

    def test_after_the_newest_id_gives_nothing_and_misses_nothing(self) -> None:
        hub = Hub()
        fill(hub, 3)
        assert hub.history("shop", Filter(), lines=0, after=3) == ([], None)


class TestFilters:
    def test_a_process_type_matches_all_its_dynos_but_not_a_prefix_name(self) -> None:
        hub = Hub()
        for process in ("web.1", "web.2", "webhook.1", "worker.1"):
            hub.append("shop", 1.0, Source.APP, process, process)
        lines, _ = hub.history("shop", Filter(process="web"), lines=100)
        assert [line.text for line in lines] == ["web.1", "web.2"]

    def test_a_source_filter_keeps_only_that_source(self) -> None:
        hub = Hub()
        hub.append("shop", 1.0, Source.APP, "web.1", "app")
        hub.append("shop", 1.0, Source.ROUTER, "router", "router")
        lines, _ = hub.history("shop", Filter(source=Source.ROUTER), lines=100)
        assert [line.text for line in lines] == ["router"]


class TestSubscribers:
    def test_live_lines_reach_a_subscriber_in_order(self) -> None:
        hub = Hub()
        sub = hub.subscribe("shop", Filter())
        fill(hub, 3)
        assert [item.seq for item in sub.drain() if not isinstance(item, Gap)] == [1, 2, 3]

    def test_a_slow_subscriber_gets_one_gap_with_the_count_instead_of_more_memory(self) -> None:
        drops: list[int] = []
        hub = Hub(queue=3, on_drop=drops.append)
        sub = hub.subscribe("shop", Filter())
        fill(hub, 10)
        items = sub.drain()
        assert [getattr(i, "seq", None) for i in items[:3]] == [1, 2, 3]
        assert items[3:] == [Gap(7)]
        assert sum(drops) == 7
        fill(hub, 1)
        assert [getattr(i, "seq", None) for i in sub.drain()] == [11]

    def test_an_unsubscribed_client_gets_nothing_more(self) -> None:
        hub = Hub()
        sub = hub.subscribe("shop", Filter())
        hub.unsubscribe("shop", sub)
        fill(hub, 2)
        assert sub.drain() == []
        assert hub.subscriber_count() == 0


def restored(seqs: list[int]) -> list[LogLine]:
    return [LogLine(seq, 1000.0, Source.APP, "web.1", f"kept {seq}") for seq in seqs]


class TestRestoredAfterARestart:
    def test_lines_kept_by_the_last_process_are_history_again(self) -> None:
        hub = Hub(seq_base=1_000_000)
        hub.restore("shop", restored(list(range(500, 550))))
        lines, _ = hub.history("shop", Filter(), lines=1500)
        assert [line.seq for line in lines] == list(range(500, 550))

    def test_new_ids_continue_above_the_kept_ones(self) -> None:
        hub = Hub(seq_base=1_000_000)
        hub.restore("shop", restored(list(range(500, 550))))
        assert hub.append("shop", 1.0, Source.APP, "web.1", "new").seq == 1_000_000

    def test_ids_stay_above_the_kept_ones_even_if_the_clock_went_back(self) -> None:
        hub = Hub(seq_base=100)
        hub.restore("shop", restored(list(range(500, 550))))
        assert hub.append("shop", 1.0, Source.APP, "web.1", "new").seq == 550

    def test_a_resume_from_a_kept_id_gets_the_rest_and_the_new_lines_without_a_gap(
        self,
    ) -> None:
        hub = Hub(seq_base=1_000_000)
        hub.restore("shop", restored(list(range(500, 550))))
        hub.append("shop", 1.0, Source.APP, "web.1", "new")
        lines, missed = hub.history("shop", Filter(), lines=0, after=499)
        assert [line.seq for line in lines] == [*range(500, 550), 1_000_000]
        assert missed is None

    def test_a_resume_from_an_id_the_crash_lost_says_some_may_be_missing(self) -> None:
        """The old process streamed 550 and 551 but crashed before they reached the disk."""
        hub = Hub(seq_base=1_000_000)
        hub.restore("shop", restored(list(range(500, 550))))
        lines, missed = hub.history("shop", Filter(), lines=0, after=551)
        assert missed == Missed(None)
        assert lines == []

    def test_lines_that_fell_out_are_counted_without_the_ids_between_processes(self) -> None:
        hub = Hub(seq_base=1_000_000, lines=5)
        hub.restore("shop", restored(list(range(500, 550))))
        fill(hub, 10)  # 1_000_000 .. 1_000_009; the ring keeps the last 5
        _, missed = hub.history("shop", Filter(), lines=0, after=545)
        # 546..549 (4 kept lines) and 1_000_000..1_000_004 (5) fell out; the ids between
        # the two processes were never lines
        assert missed == Missed(9)

    def test_an_id_from_before_the_kept_lines_is_unknown(self) -> None:
        hub = Hub(seq_base=1_000_000)
        hub.restore("shop", restored(list(range(500, 550))))
        assert hub.history("shop", Filter(), lines=0, after=10)[1] == Missed(None)


class TestEviction:
    def test_past_the_bound_the_least_recently_written_ring_goes(self) -> None:
        hub = Hub(apps=3)
        for app in ("a", "b", "c"):
            fill(hub, 2, app=app)
        fill(hub, 1, app="a")  # a is now the most recent
        fill(hub, 1, app="d")
        assert hub.ring_count() == 3
        assert hub.history("b", Filter(), lines=10)[0] == []
        assert len(hub.history("a", Filter(), lines=10)[0]) == 3

    def test_a_followed_ring_is_not_evicted(self) -> None:
        hub = Hub(apps=2)
        fill(hub, 1, app="a")
        sub = hub.subscribe("a", Filter())
        fill(hub, 1, app="b")
        fill(hub, 1, app="c")
        assert hub.history("a", Filter(), lines=10)[0] != []
        fill(hub, 1, app="a")
        assert [type(item) for item in sub.drain()] == [LogLine]

    def test_an_app_that_comes_back_numbers_above_its_old_ids(self) -> None:
        hub = Hub(apps=1, seq_base=1)
        fill(hub, 10, app="a")
        fill(hub, 1, app="b")  # a is dropped
        line = hub.append("a", 1.0, Source.APP, "web.1", "back")
        assert line.seq > 10
        lines, missed = hub.history("a", Filter(), lines=0, after=10)
        assert missed == Missed(None)
        assert lines == [line]

    def test_reading_an_unknown_app_makes_no_ring(self) -> None:
        hub = Hub()
        assert hub.history("nobody", Filter(), lines=10) == ([], None)
        hub.unsubscribe("nobody", hub.subscribe("other", Filter()))
        assert hub.ring_count() == 1
