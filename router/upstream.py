"""Connections to app endpoints: one protocol per connection, a keep-alive pool per endpoint.

An ``UpstreamConnection`` parses responses with llhttp (httptools) and hands
every event to the exchange it serves; it never buffers a body. Idle
connections wait in the pool (most recently used first, so the fewest stay
warm) until reused, closed by the app, or swept after ``pool_idle_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

import httptools

if TYPE_CHECKING:
    from router.routes import Endpoint


class ResponseHandler(Protocol):
    """What the upstream connection reports to (the exchange being served)."""

    def response_head(self, conn: UpstreamConnection, status: int, reason: bytes) -> None: ...
    def response_body(self, data: bytes) -> None: ...
    def response_complete(self, conn: UpstreamConnection) -> None: ...
    def response_upgraded(self, conn: UpstreamConnection, rest: bytes) -> None: ...
    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None: ...
    def upstream_writable(self, writable: bool) -> None: ...
    def cork(self, on: bool) -> None:
        """Gather what one read produces into one write to the client (``False`` flushes)."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_interim",
        "_parser",
        "closed",
        "endpoint",
        "handler",
        "headers",
        "idle_since",
        "pool",
        "reason",
        "reused",
        "transport",
        "tunnel",
    )

    def __init__(self, endpoint: Endpoint, pool: Pool) -> None:
        self.endpoint = endpoint
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.handler: ResponseHandler | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._interim = False
        self._parser: httptools.HttpResponseParser | None = None
        #: Set once upgraded: raw bytes go straight to this callable.
        self.tunnel: Callable[[bytes], None] | None = None

    # -- life cycle -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def begin(self, handler: ResponseHandler) -> None:
        """Serve one exchange: a fresh parser (a HEAD reply leaves llhttp expecting a body)."""
        self.handler = handler
        self.headers = []
        self._interim = False
        self._parser = httptools.HttpResponseParser(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.upstream_lost(self, exc)

    def close(self) -> None:
        self.closed = True
        self.handler = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.handler = None
        if self.transport is not None:
            self.transport.abort()

    # -- flow control -----------------------------------------------------------------------

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.upstream_writable(False)

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.upstream_writable(True)

    # -- bytes in -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel(data)
            return
        handler = self.handler
        if handler is None or self._parser is None:
            # Bytes on an idle connection: the app broke keep-alive framing. Drop it.
            self.abort()
            return
        handler.cork(True)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            if self.handler is not None:
                self.handler.response_upgraded(self, data[offset:])
        except httptools.HttpParserError as exc:
            self.handler = None
            self.abort()
            handler.upstream_lost(self, exc)
        finally:
            handler.cork(False)

    def on_status(self, status: bytes) -> None:
        self.reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        # 1xx other than 101: an interim response (100 Continue, 103 Early Hints).
        self._interim = 100 <= status < 200 and status != 101
        if self.handler is not None:
            self.handler.response_head(self, status, self.reason)
        if self._interim:
            self.headers = []

    def on_body(self, body: bytes) -> None:
        if self.handler is not None:
            self.handler.response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.handler is not None:
            self.handler.response_complete(self)

    @property
    def keep_alive(self) -> bool:
        return self._parser is not None and self._parser.should_keep_alive()


class Pool:
    """Idle keep-alive connections per endpoint."""

    def __init__(self, *, max_idle: int, idle_timeout: float) -> None:
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout

    def has_idle(self, endpoint: Endpoint) -> bool:
        return bool(self._idle.get((endpoint.host, endpoint.port)))

    def take(self, endpoint: Endpoint) -> UpstreamConnection | None:
        conns = self._idle.get((endpoint.host, endpoint.port))
        while conns:
            conn = conns.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        return None

    def give_back(self, conn: UpstreamConnection, now: float) -> None:
        key = (conn.endpoint.host, conn.endpoint.port)
        conns = self._idle.setdefault(key, [])
        if conn.closed or len(conns) >= self._max_idle:
            conn.close()
            return
        conn.handler = None
        conn.idle_since = now
        conns.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        conns = self._idle.get((conn.endpoint.host, conn.endpoint.port))
        if conns and conn in conns:
            conns.remove(conn)

    def sweep(self, now: float) -> int:
        """Close connections idle past the timeout; the count closed."""
        closed = 0
        for conns in self._idle.values():
            # Oldest first: the list is ordered by give_back time.
            while conns and now - conns[0].idle_since > self._idle_timeout:
                conns.pop(0).close()
                closed += 1
        return closed

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    def idle_count(self) -> int:
        return sum(len(c) for c in self._idle.values())
