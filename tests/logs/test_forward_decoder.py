"""The forward decoder on its own: every mode as Fluent Bit sends it, and every way to be wrong."""

from __future__ import annotations

import gzip
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logs.errors import FrameError
from logs.forward import ForwardDecoder, gunzip, pack_event_time

T = 1_795_000_000.25


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def entries_stream(*entries: Any) -> bytes:
    return b"".join(pack(e) for e in entries)


def decode(*frames: Any) -> list[Any]:
    return ForwardDecoder().feed(b"".join(f if isinstance(f, bytes) else pack(f) for f in frames))


class TestModes:
    def test_message_mode_with_an_integer_time(self) -> None:
        [batch] = decode(["a.tag", 1_795_000_000, {"log": "hi"}])
        assert batch.tag == "a.tag"
        assert batch.entries == [(1_795_000_000.0, {"log": "hi"})]
        assert batch.chunk is None

    def test_message_mode_with_eventtime_and_a_chunk(self) -> None:
        [batch] = decode(["t", pack_event_time(T), {"log": "x"}, {"chunk": "c1"}])
        time, _ = batch.entries[0]
        assert time == pytest.approx(T, abs=1e-6)
        assert batch.chunk == "c1"

    def test_eventtime_keeps_nanoseconds(self) -> None:
        ext = msgpack.ExtType(
            0, (1_795_000_000).to_bytes(4, "big") + (123_456_789).to_bytes(4, "big")
        )
        [batch] = decode(["t", ext, {"log": "x"}])
        time, _ = batch.entries[0]
        assert time == pytest.approx(1_795_000_000.123456789, abs=1e-6)

    def test_forward_mode_with_float_times(self) -> None:
        [batch] = decode(["t", [[T, {"log": "1"}], [T + 1, {"log": "2"}]], {"size": 2}])
        assert [r["log"] for _, r in batch.entries] == ["1", "2"]

    def test_packed_forward_as_bin(self) -> None:
        payload = entries_stream(
            [pack_event_time(T), {"log": "1"}], [pack_event_time(T), {"log": "2"}]
        )
        [batch] = decode(["t", payload, {"size": 2, "chunk": "abc"}])
        assert len(batch.entries) == 2
        assert batch.chunk == "abc"

    def test_compressed_packed_forward_with_several_gzip_members(self) -> None:
        first = gzip.compress(entries_stream([pack_event_time(T), {"log": "1"}]))
        second = gzip.compress(entries_stream([pack_event_time(T), {"log": "2"}]))
        [batch] = decode(["t", first + second, {"compressed": "gzip", "size": 2}])
        assert [r["log"] for _, r in batch.entries] == ["1", "2"]

    @pytest.mark.parametrize("compressed", ["text", "gzip"])
    def test_size_is_a_hint_not_a_count_as_in_fluentds_in_forward(self, compressed: str) -> None:
        """The npm fluent-logger 3.x sends the payload's byte length as ``size`` (the gzip's
        when compressed) and its own ``eventEntryDataSize``; in_forward does not check
        ``size``, so neither does slipway (test_real_senders.py runs that client)."""
        raw = entries_stream(*([int(T), {"message": str(i)}] for i in range(3)))
        payload = gzip.compress(raw) if compressed == "gzip" else raw
        options = {
            "chunk": "bm9kZQ==",
            "size": len(payload),
            "compressed": compressed,
            "eventEntryDataSize": len(raw),
        }
        [batch] = decode(["slipway.shop.web.1", payload, options])
        assert [r["message"] for _, r in batch.entries] == ["0", "1", "2"]
        assert batch.chunk == "bm9kZQ=="

    def test_the_metadata_entry_shape_of_fluent_bit_2(self) -> None:
        payload = entries_stream([[pack_event_time(T), {"otel": 1}], {"log": "with meta"}])
        [batch] = decode(["t", payload])
        assert batch.entries[0][1] == {"log": "with meta"}
        assert batch.entries[0][0] == pytest.approx(T, abs=1e-6)

    def test_frames_split_across_reads_come_out_whole(self) -> None:
        data = pack(["t", T, {"log": "split"}]) * 3
        decoder = ForwardDecoder()
        out = []
        for i in range(len(data)):
            out += decoder.feed(data[i : i + 1])
        assert [b.entries[0][1]["log"] for b in out] == ["split"] * 3

    def test_metrics_signal_is_marked_so_it_is_not_kept(self) -> None:
        [batch] = decode(["t", [[T, {"m": 1}]], {"fluent_signal": 1}])
        assert batch.signal == 1

    def test_a_cmetrics_payload_is_not_read_as_entries(self) -> None:
        """Fluent Bit's metrics frame: one msgpack map in the bin, not [time, record] entries."""
        cmetrics = pack({"meta": {"cmetrics": {}}, "metrics": [{"name": "cpu"}]})
        [batch] = decode(["fluentbit.metrics", cmetrics, {"chunk": "c" * 32, "fluent_signal": 1}])
        assert (batch.signal, batch.entries, batch.chunk) == (1, [], "c" * 32)

    def test_str32_packed_entries_are_read_byte_for_byte(self) -> None:
        """Fluentd's out_forward: the entries as str32, not valid UTF-8 (EventTime, ints)."""
        entries = entries_stream([pack_event_time(T), {"message": "hi", "n": 0xD7}])
        frame = b"\x93" + pack("slipway.shop.web.1") + b"\xdb" + len(entries).to_bytes(4, "big")
        [batch] = ForwardDecoder().feed(frame + entries + pack({"size": 1, "compressed": "text"}))
        [(time, record)] = batch.entries
        assert time == pytest.approx(T, abs=1e-6)
        assert record == {"message": "hi", "n": 0xD7}

    def test_invalid_utf8_in_a_tag_is_refused(self) -> None:
        raw = pack(["slipway.shop.web.1", T, {"log": "x"}]).replace(b"shop", b"sh\xffp")
        with pytest.raises(FrameError) as err:
            ForwardDecoder().feed(raw)
        assert err.value.reason == "bad_tag"

    def test_invalid_utf8_in_a_forward_mode_record_is_replaced(self) -> None:
        raw = pack(["t", [[T, {"log": "ok"}]]]).replace(b"ok", b"\xff\xfe")
        [batch] = ForwardDecoder().feed(raw)
        assert batch.entries[0][1]["log"] == "\ufffd\ufffd"

    def test_a_refused_frame_carries_its_chunk_so_the_client_can_be_told(self) -> None:
        with pytest.raises(FrameError) as err:
            decode(["t", b"x", {"compressed": "brotli", "chunk": "abc"}])
        assert err.value.chunk == "abc"

    def test_invalid_utf8_in_a_line_is_replaced_not_fatal(self) -> None:
        raw = msgpack.packb(["t", T, {"log": "ok"}], use_bin_type=True).replace(b"ok", b"\xff\xfe")
        [batch] = ForwardDecoder().feed(raw)
        assert batch.entries[0][1]["log"] == "\ufffd\ufffd"


class TestMalformedFrames:
    @pytest.mark.parametrize(
        ("frame", "reason"),
        [
            ({"not": "an array"}, "bad_frame"),
            (["only-tag"], "bad_frame"),
            ([1, T, {}], "bad_tag"),
            (["t", T, "not a map"], "bad_record"),
            (["t", T, {}, {}, "extra"], "bad_frame"),
            (["t", [[T]]], "bad_entry"),
            (["t", [["yesterday", {}]]], "bad_time"),
            (["t", [[float("nan"), {}]]], "bad_time"),
            (["t", float("inf"), {}], "bad_time"),
            (["t", [[[T, "meta"], {}]]], "bad_entry"),
            (["t", [[T, {}]], "options"], "bad_option"),
            (["t", [[T, {}]], {"chunk": 7}], "bad_option"),
            (["t", b"x", {"compressed": "lz4"}], "bad_option"),
            (["t", b"x", {"compressed": "zstd"}], "bad_zstd"),
            (["t", [[T, {}]], {"fluent_signal": "1"}], "bad_option"),
            (["t", b"not gzip", {"compressed": "gzip"}], "bad_gzip"),
            (["t", b"\xc1", {}], "bad_msgpack"),
            (["t", True, {}], "bad_frame"),
            (["t", msgpack.ExtType(5, b"12345678"), {}], "bad_ext"),
        ],
    )
    def test_each_shape_error_has_its_reason(self, frame: Any, reason: str) -> None:
        with pytest.raises(FrameError) as err:
            decode(frame)
        assert err.value.reason == reason

    def test_an_invalid_msgpack_byte_is_a_frame_error(self) -> None:
        with pytest.raises(FrameError, match="bad_msgpack"):
            ForwardDecoder().feed(b"\xc1")

    def test_a_frame_past_the_limit_is_refused_before_it_is_buffered(self) -> None:
        with pytest.raises(FrameError, match="too_large"):
            ForwardDecoder(max_frame=1024).feed(
                b"\x92\xa1t" + b"\xc6\x00\x10\x00\x00" + b"x" * 2048
            )

    def test_a_gzip_bomb_is_refused(self) -> None:
        bomb = gzip.compress(b"\x00" * 2_000_000)
        with pytest.raises(FrameError, match="too_large"):
            gunzip(bomb, limit=1_000_000)

    def test_a_truncated_gzip_member_is_refused(self) -> None:
        with pytest.raises(FrameError, match="bad_gzip"):
            gunzip(gzip.compress(b"abc" * 100)[:-10])


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


REASONS = {
    "bad_frame",
    "bad_tag",
    "bad_record",
    "bad_entry",
    "bad_time",
    "bad_option",
    "bad_gzip",
    "bad_msgpack",
    "bad_ext",
    "too_large",
    "bad_zstd",
}


def outcome(data: bytes) -> tuple[list[Any], FrameError | None]:
    """The batches, or the FrameError: anything else escaping is the bug the fuzz looks for."""
    try:
        return ForwardDecoder().feed(data), None
    except FrameError as exc:
        return [], exc


class TestFuzz:
    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=512))
    def test_random_bytes_give_batches_or_a_frame_error(self, data: bytes) -> None:
        batches, error = outcome(data)
        if error is not None:
            assert error.reason in REASONS
        else:
            assert all(isinstance(b.tag, str) for b in batches)

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=8), msgpack_values, st.one_of(st.none(), msgpack_values))
    def test_random_frame_shapes_give_batches_or_a_frame_error(
        self, tag: str, second: Any, third: Any
    ) -> None:
        frame = [tag, second] if third is None else [tag, second, third]
        batches, error = outcome(pack(frame))
        if error is not None:
            assert error.reason in REASONS
        else:
            for batch in batches:
                assert all(isinstance(r, dict) for _, r in batch.entries)

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(
            st.tuples(st.floats(0, 2**31), st.dictionaries(st.text(max_size=5), st.text())),
            max_size=5,
        )
    )
    def test_packed_entries_round_trip(self, entries: list[tuple[float, dict[str, str]]]) -> None:
        payload = entries_stream(*[[t, r] for t, r in entries])
        [batch] = decode(
            ["t", gzip.compress(payload), {"compressed": "gzip", "size": len(entries)}]
        )
        assert batch.entries == [(t, r) for t, r in entries]
