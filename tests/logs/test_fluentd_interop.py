"""The forward port against frames byte for byte as Fluentd and Fluent Bit send them.

Fluentd's out_forward (``Node#send_data_actual``) writes ``0x93``, the tag, the
chunk as **str32** (``0xdb`` + 4-byte length, never bin), then
``{"size", "compressed", "chunk"?}``; ``chunk`` is ``Base64.encode64`` of the
16-byte chunk id, trailing newline included, and only with
``require_ack_response``. Its transport heartbeat is a TCP connect and close.
Fluent Bit 2.x+ sends metrics and traces on the same port with
``fluent_signal`` 1 and 2 and a cmetrics/ctraces payload instead of entries.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import os
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard

from logs.forward import MAX_DECOMPRESSED, FrameError, pack_event_time, unzstd
from tests.logs.conftest import ForwardClient, Service, start_service
from tests.logs.test_forward_server import eventually, ping, texts

T = 1_795_000_000.5

#: The frame of issue #17, as Fluentd 1.x sent it: one "hi" for tapp's web.1, acked.
ISSUE_FRAME = bytes.fromhex(
    "93b2736c69707761792e746170702e7765622e31db0000001792d7006b14c394000000008"
    "1a76d657373616765a2686983a473697a6501aa636f6d70726573736564a474657874a563"
    "68756e6bb941414543417751464267634943516f4c4441304f44773d3d0a"
)


def fluentd_chunk_id() -> str:
    """``Base64.encode64(chunk.unique_id)``: 24 characters and Ruby's trailing newline."""
    return base64.encodebytes(os.urandom(16)).decode()


def fluentd_frame(tag: str, body: bytes, options: dict[str, Any]) -> bytes:
    """What out_forward writes: array of 3, tag, the chunk body as str32, the options."""
    return (
        b"\x93"
        + msgpack.packb(tag)
        + b"\xdb"
        + len(body).to_bytes(4, "big")
        + body
        + msgpack.packb(options)
    )


def event_stream(*texts: str) -> bytes:
    """A Fluentd buffer chunk: [EventTime, record] entries back to back (msgpack-ruby)."""
    return b"".join(
        msgpack.packb([pack_event_time(T + i), {"message": text}]) for i, text in enumerate(texts)
    )


class TestFluentdOutForward:
    async def test_the_frame_from_the_issue_is_acked_and_its_line_kept(self, svc: Service) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        await client.send(ISSUE_FRAME)
        assert await client.reply() == {"ack": "AAECAwQFBgcICQoLDA0ODw==\n"}
        assert texts(svc, "tapp") == ["hi"]
        await client.close()

    async def test_text_chunks_with_require_ack_response_are_acked_with_the_chunk_id(
        self, svc: Service
    ) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        chunk = fluentd_chunk_id()
        body = event_stream(*(f"line {i}" for i in range(200)))
        await client.send(
            fluentd_frame(
                "slipway.shop.web.1", body, {"size": 200, "compressed": "text", "chunk": chunk}
            )
        )
        assert await client.reply() == {"ack": chunk}
        assert texts(svc) == [f"line {i}" for i in range(200)]
        assert svc.sample("slipway_logs_forward_errors_total", reason="bad_entry") == 0
        await client.close()

    async def test_gzip_chunks_of_several_members_are_acked(self, svc: Service) -> None:
        """A compressed buffer chunk is one gzip member per write, concatenated."""
        client = await ForwardClient.connect(svc.forward_port)
        chunk = fluentd_chunk_id()
        body = gzip.compress(event_stream("g0", "g1")) + gzip.compress(event_stream("g2"))
        await client.send(
            fluentd_frame(
                "slipway.shop.worker.1", body, {"size": 3, "compressed": "gzip", "chunk": chunk}
            )
        )
        assert await client.reply() == {"ack": chunk}
        assert texts(svc) == ["g0", "g1", "g2"]
        await client.close()

    async def test_without_require_ack_response_lines_arrive_and_nothing_is_answered(
        self, svc: Service
    ) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        for compressed, body in (
            ("text", event_stream("plain")),
            ("gzip", gzip.compress(event_stream("zipped"))),
        ):
            await client.send(
                fluentd_frame("slipway.shop.web.1", body, {"size": 1, "compressed": compressed})
            )
        # out_forward then half-closes and closes; the server must not have written a byte
        client.writer.write_eof()
        await eventually(lambda: texts(svc) == ["plain", "zipped"])
        assert await client.reader.read() == b""
        await client.close()

    async def test_a_transport_heartbeat_connect_and_close_is_harmless(self, svc: Service) -> None:
        for _ in range(3):
            client = await ForwardClient.connect(svc.forward_port)
            await client.close()
        await eventually(lambda: svc.sample("slipway_logs_forward_connections") == 0)
        assert svc.sample("slipway_logs_forward_errors_total", reason="handshake") == 0
        client = await ForwardClient.connect(svc.forward_port)
        await client.send(ISSUE_FRAME)
        assert await client.reply() == {"ack": "AAECAwQFBgcICQoLDA0ODw==\n"}
        await client.close()

    async def test_a_udp_heartbeat_is_answered_as_in_forward_does(self, svc: Service) -> None:
        """``heartbeat_type udp``: a NUL to the port number over UDP, a NUL back."""
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        class Node(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                replies.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(
            Node, remote_addr=("127.0.0.1", svc.forward_port)
        )
        try:
            transport.sendto(b"\0")
            async with asyncio.timeout(5):
                assert await replies.get() == b"\0"
            transport.sendto(b"x" * 1000)  # not a heartbeat: no answer, least of all a big one
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await replies.get()
        finally:
            transport.close()

    async def test_a_heartbeat_to_a_keyed_port_gets_a_helo_and_may_leave(
        self, tmp_path: Path
    ) -> None:
        svc, stop = await start_service(tmp_path, shared_key="s3cret")
        try:
            client = await ForwardClient.connect(svc.forward_port)
            assert (await client.reply())[0] == "HELO"
            await client.close()
            await eventually(lambda: svc.sample("slipway_logs_forward_connections") == 0)
            assert svc.sample("slipway_logs_forward_errors_total", reason="handshake") == 0
        finally:
            await stop()

    async def test_the_security_section_then_a_chunk_is_acked(self, tmp_path: Path) -> None:
        """``<security> shared_key``: out_forward's hex salt, its PING, then the str32 chunk."""
        svc, stop = await start_service(tmp_path, shared_key="s3cret")
        try:
            client = await ForwardClient.connect(svc.forward_port)
            helo = await client.reply()
            salt = os.urandom(16).hex().encode()  # SecureRandom.hex(16)
            await client.send(msgpack.packb(ping(helo, b"s3cret", salt=salt)))
            pong = await client.reply()
            assert pong[:2] == ["PONG", True]
            expected = hashlib.sha512(salt + b"slipway-logs" + helo[1]["nonce"] + b"s3cret")
            assert pong[4] == expected.hexdigest()
            chunk = fluentd_chunk_id()
            await client.send(
                fluentd_frame(
                    "slipway.shop.web.1",
                    event_stream("keyed"),
                    {"size": 1, "compressed": "text", "chunk": chunk},
                )
            )
            assert await client.reply() == {"ack": chunk}
            assert texts(svc) == ["keyed"]
            await client.close()
        finally:
            await stop()

    @pytest.mark.parametrize("ack", [True, False])
    async def test_a_zstd_chunk_is_read_like_a_gzip_one(self, svc: Service, ack: bool) -> None:
        """Fluentd's `compress zstd`: a streaming compressor, so no content size in the frame."""
        client = await ForwardClient.connect(svc.forward_port)
        chunk = fluentd_chunk_id()
        # One frame per buffer write, concatenated, as with gzip members.
        payload = _zstd_stream(event_stream("z0", "z1")) + _zstd_stream(event_stream("z2"))
        options: dict[str, object] = {"size": 3, "compressed": "zstd"}
        if ack:
            options["chunk"] = chunk
        await client.send(fluentd_frame("slipway.shop.web.1", payload, options))
        if ack:
            assert (await client.reply())["ack"] == chunk
        await eventually(lambda: texts(svc) == ["z0", "z1", "z2"], timeout=5)
        await client.close()

    async def test_a_bad_or_oversized_zstd_chunk_is_refused_with_the_reason(
        self, svc: Service
    ) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        chunk = fluentd_chunk_id()
        await client.send(
            fluentd_frame(
                "slipway.shop.web.1",
                b"(\xb5/\xfd not really zstd",
                {"size": 1, "compressed": "zstd", "chunk": chunk},
            )
        )
        reply = await client.reply()
        assert reply["ack"] != chunk
        assert await client.closed_by_server()
        assert svc.sample("slipway_logs_forward_errors_total", reason="bad_zstd") == 1
        assert texts(svc) == []
        await client.close()


def test_a_zstd_bomb_is_cut_at_the_limit_without_reading_it_all() -> None:
    bomb = _zstd_stream(b"\0" * (MAX_DECOMPRESSED + 1))
    assert len(bomb) < 100_000
    with pytest.raises(FrameError, match="over"):
        unzstd(bomb)


def _zstd_stream(data: bytes) -> bytes:
    """One zstd frame as a streaming compressor writes it (no content size)."""
    compressor = zstandard.ZstdCompressor().compressobj()
    return compressor.compress(data) + compressor.flush()


class TestFluentBitSignals:
    async def test_metrics_and_traces_frames_are_acked_and_counted_not_kept(
        self, svc: Service
    ) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        cmetrics = msgpack.packb(
            {"meta": {"cmetrics": {}, "processing": {}}, "metrics": [{"meta": {"opts": {}}}]}
        )
        ctraces = msgpack.packb({"resourceSpans": [{"resource": {}, "scopeSpans": []}]})
        frames = [
            ["fluentbit.metrics", cmetrics, {"chunk": "m" * 32, "fluent_signal": 1}],
            [
                "fluentbit.metrics",
                gzip.compress(cmetrics),
                {"chunk": "z" * 32, "compressed": "gzip", "fluent_signal": 1},
            ],
            ["otel.traces", ctraces, {"chunk": "t" * 32, "fluent_signal": 2}],
        ]
        for frame in frames:
            await client.send(msgpack.packb(frame, use_bin_type=True))
        assert [await client.reply() for _ in frames] == [
            {"ack": "m" * 32},
            {"ack": "z" * 32},
            {"ack": "t" * 32},
        ]
        assert svc.sample("slipway_logs_forward_signals_dropped_total", signal="metrics") == 2
        assert svc.sample("slipway_logs_forward_signals_dropped_total", signal="traces") == 1
        # the same connection still carries logs
        await client.send(
            msgpack.packb(
                ["slipway.shop.web.1", [[T, {"log": "after"}]], {"chunk": "l", "fluent_signal": 0}]
            )
        )
        assert await client.reply() == {"ack": "l"}
        assert texts(svc) == ["after"]
        await client.close()

    async def test_without_require_ack_response_signals_are_counted_and_nothing_answered(
        self, svc: Service
    ) -> None:
        """Fluent Bit's default: no ``chunk``, so options are ``{"fluent_signal": N}`` alone."""
        client = await ForwardClient.connect(svc.forward_port)
        cmetrics = msgpack.packb({"meta": {"cmetrics": {}}, "metrics": []})
        ctraces = msgpack.packb({"resourceSpans": []})
        frames = [
            ["fluentbit.metrics", cmetrics, {"fluent_signal": 1}],
            [
                "fluentbit.metrics",
                gzip.compress(cmetrics),
                {"compressed": "gzip", "fluent_signal": 1},
            ],
            ["otel.traces", ctraces, {"fluent_signal": 2}],
            # then logs on the same connection, PackedForward as bin with its size
            [
                "slipway.shop.web.1",
                msgpack.packb([pack_event_time(T), {"log": "unacked"}]),
                {"size": 1, "fluent_signal": 0},
            ],
        ]
        for frame in frames:
            await client.send(msgpack.packb(frame, use_bin_type=True))
        await eventually(lambda: texts(svc) == ["unacked"])
        assert svc.sample("slipway_logs_forward_signals_dropped_total", signal="metrics") == 2
        assert svc.sample("slipway_logs_forward_signals_dropped_total", signal="traces") == 1
        client.writer.write_eof()
        assert await client.reader.read() == b"", "nothing is answered without a chunk"
        await client.close()
