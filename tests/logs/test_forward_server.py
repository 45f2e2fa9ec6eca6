"""The forward port with real clients: fluent-logger, and frames shaped like Fluent Bit's."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
from pathlib import Path
from typing import Any

import msgpack
import uvloop
from fluent import asyncsender, sender

from logs.forward import pack_event_time
from logs.model import Source
from logs.ring import Filter
from tests.helpers import eventually
from tests.logs.conftest import ForwardClient, Service, start_service

T = 1_795_000_000.5


def kube_record(text: str, app: str = "shop", process: str = "web") -> dict[str, Any]:
    """A record as Fluent Bit's tail + cri parser + kubernetes filter produce it."""
    return {
        "time": "2026-11-23T10:00:00.123456789Z",
        "stream": "stdout",
        "_p": "F",
        "log": text + "\n",
        "kubernetes": {
            "pod_name": f"{app}-{process}-7d9f8c5b4-x7k2q",
            "namespace_name": "apps",
            "container_name": process,
            "labels": {"slipway.dev/app": app, "slipway.dev/process": process},
        },
    }


def texts(svc: Service, app: str = "shop") -> list[str]:
    lines, _ = svc.hub.history(app, Filter(), lines=10_000)
    return [line.text for line in lines]


class TestFluentBitFrames:
    async def test_forward_mode_is_acked_after_the_lines_are_in_the_ring(
        self, svc: Service
    ) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        entries = [
            [pack_event_time(T), kube_record("one")],
            [pack_event_time(T), kube_record("two")],
        ]
        await client.send(["kube.var.log.containers.x", entries, {"chunk": "Y2h1bmsx", "size": 2}])
        assert await client.reply() == {"ack": "Y2h1bmsx"}
        assert texts(svc) == ["one", "two"]
        [line, _] = svc.hub.history("shop", Filter(), lines=10)[0]
        assert line.process == "web.x7k2q"
        assert line.source is Source.APP
        await client.close()

    async def test_packed_forward_with_metadata_entries_is_acked(self, svc: Service) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        payload = b"".join(
            msgpack.packb([[pack_event_time(T), {}], kube_record(f"m{i}")]) for i in range(3)
        )
        await client.send(["kube.x", payload, {"chunk": "p1", "size": 3}])
        assert await client.reply() == {"ack": "p1"}
        assert texts(svc) == ["m0", "m1", "m2"]
        await client.close()

    async def test_compressed_packed_forward_with_two_gzip_members_is_acked(
        self, svc: Service
    ) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        members = b"".join(
            gzip.compress(msgpack.packb([pack_event_time(T), kube_record(f"g{i}")]))
            for i in range(2)
        )
        await client.send(["kube.x", members, {"chunk": "g1", "size": 2, "compressed": "gzip"}])
        assert await client.reply() == {"ack": "g1"}
        assert texts(svc) == ["g0", "g1"]
        await client.close()

    async def test_message_mode_with_a_chunk_is_acked(self, svc: Service) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        await client.send(["slipway.shop.worker.2", 1_795_000_000, {"log": "msg"}, {"chunk": "m"}])
        assert await client.reply() == {"ack": "m"}
        [line] = svc.hub.history("shop", Filter(), lines=10)[0]
        assert (line.process, line.text, line.time) == ("worker.2", "msg", 1_795_000_000.0)
        await client.close()

    async def test_a_forwarded_router_tag_is_kept_as_an_app_line_not_the_platforms(
        self, svc: Service
    ) -> None:
        """Attack: a sender with access to the port forges `slipway[router]` lines for shop
        (a fake 200 to hide an outage). Router lines only come in process; this one is
        acked and kept as `app[router]`, and the claim is counted."""
        client = await ForwardClient.connect(svc.forward_port)
        await client.send(
            ["slipway.shop.router", [[T, {"log": "at=info status=200"}]], {"chunk": "r"}]
        )
        assert await client.reply() == {"ack": "r"}
        [line] = svc.hub.history("shop", Filter(), lines=10)[0]
        assert (line.source, line.process) == (Source.APP, "router")
        assert svc.hub.history("shop", Filter(source=Source.ROUTER), lines=10)[0] == []
        assert svc.sample("slipway_logs_lines_relabelled_total", claimed="router") == 1
        await client.close()

    async def test_records_of_no_known_app_are_counted_and_still_acked(self, svc: Service) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        await client.send(["some.other.tag", [[T, {"log": "who"}]], {"chunk": "u"}])
        assert await client.reply() == {"ack": "u"}
        assert svc.sample("slipway_logs_lines_dropped_total", reason="unknown_app") == 1
        await client.close()

    async def test_acked_lines_are_on_disk_in_the_spool(self, svc: Service) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        await client.send(["slipway.shop.web.1", [[T, {"log": "durable"}]], {"chunk": "d"}])
        assert await client.reply() == {"ack": "d"}
        [journal] = list((svc.spool.directory / "shop").iterdir())
        assert b'"text": "durable"' in journal.read_bytes()
        await client.close()


class TestFluentLogger:
    async def test_the_sync_sender_with_integer_times(self, svc: Service) -> None:
        s = sender.FluentSender("slipway.shop", host="127.0.0.1", port=svc.forward_port)
        assert await asyncio.to_thread(s.emit, "web.1", {"message": "hello from fluent-logger"})
        await asyncio.to_thread(s.close)
        await eventually(lambda: texts(svc) == ["hello from fluent-logger"])
        assert svc.sample("slipway_logs_lines_received_total", source="app") == 1

    async def test_the_async_sender_with_eventtime(self, svc: Service) -> None:
        s = asyncsender.FluentSender(
            "slipway.shop", host="127.0.0.1", port=svc.forward_port, nanosecond_precision=True
        )
        for i in range(50):
            s.emit_with_time("release", T + i, {"message": f"v{i}"})
        await asyncio.to_thread(s.close)
        await eventually(lambda: len(texts(svc)) == 50)
        lines = svc.hub.history("shop", Filter(), lines=100)[0]
        # a release tag from outside is an app line: release lines come from the platform
        assert (lines[0].source, lines[0].process) == (Source.APP, "release")
        assert lines[-1].time == T + 49


class TestMalformedFrames:
    async def test_a_bad_frame_closes_only_its_connection(self, svc: Service) -> None:
        good = await ForwardClient.connect(svc.forward_port)
        bad = await ForwardClient.connect(svc.forward_port)
        await bad.send(["slipway.shop.web.1", "not entries", {"compressed": "lz4"}])
        assert await bad.closed_by_server()
        assert svc.sample("slipway_logs_forward_errors_total", reason="bad_option") == 1
        await good.send(["slipway.shop.web.1", [[T, {"log": "still here"}]], {"chunk": "ok"}])
        assert await good.reply() == {"ack": "ok"}
        assert texts(svc) == ["still here"]
        await good.close()
        await bad.close()

    async def test_garbage_bytes_close_the_connection_and_are_counted(self, svc: Service) -> None:
        bad = await ForwardClient.connect(svc.forward_port)
        await bad.send(b"\xc1\xc1\xc1")
        assert await bad.closed_by_server()
        assert svc.sample("slipway_logs_forward_errors_total", reason="bad_msgpack") == 1
        await bad.close()

    async def test_a_client_that_connects_and_leaves_is_harmless(self, svc: Service) -> None:
        client = await ForwardClient.connect(svc.forward_port)
        await client.close()
        await eventually(lambda: svc.sample("slipway_logs_forward_connections") == 0)


def ping(helo: Any, key: bytes, *, salt: bytes = b"0123456789abcdef") -> list[Any]:
    nonce = helo[1]["nonce"]
    digest = hashlib.sha512(salt + b"fluent-bit-host" + nonce + key).hexdigest()
    return ["PING", "fluent-bit-host", salt, digest, "", ""]


class TestSharedKeyHandshake:
    async def test_the_right_key_gets_a_verifiable_pong_and_then_data_flows(
        self, tmp_path: Path
    ) -> None:
        svc, stop = await start_service(tmp_path, shared_key="s3cret")
        try:
            client = await ForwardClient.connect(svc.forward_port)
            helo = await client.reply()
            assert helo[0] == "HELO"
            assert len(helo[1]["nonce"]) == 16
            salt = os.urandom(16)  # not UTF-8: the server must read the PING as raw bytes
            # the PING and the first data frame in one write, as a fast client does
            await client.send(
                msgpack.packb(ping(helo, b"s3cret", salt=salt), use_bin_type=True)
                + msgpack.packb(["slipway.shop.web.1", [[T, {"log": "authed"}]], {"chunk": "a"}])
            )
            pong = await client.reply()
            assert pong[:2] == ["PONG", True]
            expected = hashlib.sha512(salt + b"slipway-logs" + helo[1]["nonce"] + b"s3cret")
            assert pong[4] == expected.hexdigest()
            assert await client.reply() == {"ack": "a"}
            await client.close()
        finally:
            await stop()

    async def test_a_wrong_key_gets_a_failed_pong_and_is_closed(self, tmp_path: Path) -> None:
        svc, stop = await start_service(tmp_path, shared_key="s3cret")
        try:
            client = await ForwardClient.connect(svc.forward_port)
            helo = await client.reply()
            await client.send(ping(helo, b"wrong"))
            pong = await client.reply()
            assert pong[:3] == ["PONG", False, "shared_key mismatch"]
            assert await client.closed_by_server()
            assert svc.sample("slipway_logs_forward_errors_total", reason="handshake") == 1
            assert texts(svc) == []
            await client.close()
        finally:
            await stop()

    async def test_data_instead_of_a_ping_is_refused(self, tmp_path: Path) -> None:
        svc, stop = await start_service(tmp_path, shared_key="s3cret")
        try:
            client = await ForwardClient.connect(svc.forward_port)
            await client.reply()
            await client.send(["slipway.shop.web.1", [[T, {"log": "sneaky"}]]])
            assert await client.closed_by_server()
            assert texts(svc) == []
            await client.close()
        finally:
            await stop()


class TestUnderUvloop:
    def test_the_receiver_acks_on_uvloop_as_in_production(self, tmp_path: Path) -> None:
        async def scenario() -> object:
            svc, stop = await start_service(tmp_path)
            try:
                client = await ForwardClient.connect(svc.forward_port)
                await client.send(["slipway.shop.web.1", [[T, {"log": "uv"}]], {"chunk": "u"}])
                reply = await client.reply()
                await client.close()
                return reply
            finally:
                await stop()

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            assert runner.run(scenario()) == {"ack": "u"}
