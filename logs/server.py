"""The forward receiver's I/O shell: one asyncio Protocol per TCP connection.

Decoding is in ``logs.forward``; this only moves bytes. A malformed frame or a
failed handshake closes that one connection, logs why and counts it; other
connections and the records they sent are untouched. Heartbeats: Fluent Bit
sends none; Fluentd's ``heartbeat_type transport`` (its default) is a TCP
connect and close, and its ``udp`` one is answered as in_forward does, with one
NUL byte on the same port number over UDP (never more than what came in).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, cast

from logs import forward
from logs.errors import FrameError, HandshakeError
from logs.metrics import LogsMetrics
from logs.service import LogService

log = logging.getLogger(__name__)


class ForwardProtocol(asyncio.Protocol):
    def __init__(self, owner: ForwardServer) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.decoder = forward.ForwardDecoder()
        self.peer = "?"
        self._nonce = b""
        self._handshake: Any = None
        self._hs_buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, only shaped like one.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.owner.connections.add(self)
        self.owner.metrics.connections.inc()
        if self.owner.shared_key is not None:
            self._nonce = os.urandom(16)
            self._handshake = forward.handshake_unpacker()
            self.transport.write(forward.helo(self._nonce))

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.connections.discard(self)
        self.owner.metrics.connections.dec()

    def data_received(self, data: bytes) -> None:
        try:
            if self._handshake is not None:
                data = self._shake(data)
                if not data:
                    return
            for batch in self.decoder.feed(data):
                if self.owner.service.accept(batch) and batch.chunk is not None:
                    assert self.transport is not None
                    self.transport.write(forward.ack(batch.chunk))
        except FrameError as exc:
            if exc.chunk is not None and self.transport is not None:
                self.transport.write(forward.refusal(exc.reason, exc.detail))
            self._refuse(exc.reason, exc.detail)
        except HandshakeError as exc:
            self._refuse("handshake", str(exc))

    def _shake(self, data: bytes) -> bytes:
        """Feed the raw-bytes unpacker until PING; returns the bytes after it."""
        assert self.owner.shared_key is not None
        assert self.transport is not None
        self._hs_buffer += data
        try:
            self._handshake.feed(data)
            ping = next(self._handshake)
        except StopIteration:
            return b""
        except Exception as exc:  # msgpack raises several types for garbage; all mean the same
            raise HandshakeError(f"unreadable PING: {type(exc).__name__}") from exc
        rest = bytes(self._hs_buffer[self._handshake.tell() :])
        self._handshake = None
        self._hs_buffer.clear()
        key = self.owner.shared_key.encode()
        result = forward.check_ping(ping, nonce=self._nonce, shared_key=key)
        self.transport.write(
            forward.pong(
                result, server_hostname=self.owner.hostname, nonce=self._nonce, shared_key=key
            )
        )
        if not result.ok:
            raise HandshakeError(result.reason_or_salt.decode())
        return rest

    def _refuse(self, reason: str, detail: str) -> None:
        log.warning(
            "forward connection closed: bad frame",
            extra={"peer": self.peer, "reason": reason, "detail": detail[:200]},
        )
        self.owner.metrics.frame_errors.labels(reason).inc()
        if self.transport is not None:
            self.transport.close()


#: in_forward's ``HEARTBEAT_UDP_PAYLOAD``; a datagram longer than its 128 bytes is ignored.
HEARTBEAT = b"\0"
_HEARTBEAT_MAX = 128


class HeartbeatProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None and len(data) <= _HEARTBEAT_MAX:
            self.transport.sendto(HEARTBEAT, addr)


class ForwardServer:
    def __init__(
        self,
        *,
        service: LogService,
        metrics: LogsMetrics,
        shared_key: str | None = None,
        hostname: str = "slipway-logs",
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.shared_key = shared_key
        self.hostname = hostname
        self.connections: set[ForwardProtocol] = set()
        self._server: asyncio.Server | None = None
        self._heartbeat: asyncio.DatagramTransport | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ForwardProtocol(self), host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        try:
            self._heartbeat, _ = await loop.create_datagram_endpoint(
                HeartbeatProtocol, local_addr=(host, bound)
            )
        except OSError as exc:  # only Fluentd's udp heartbeat needs it; data flows anyway
            log.warning(
                "udp heartbeat not served; use heartbeat_type transport",
                extra={"port": bound, "error": str(exc)},
            )
        log.info("forward receiver listening", extra={"host": host, "port": bound})
        return bound

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.close()
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self._server.wait_closed()
