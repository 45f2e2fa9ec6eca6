"""Long because: one connection's state machine; parse, hold, proxy and tunnel share its buffers.
A client connection (usually from the ingress): parse, queue, serve in order, answer errors."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

import httptools

from router import pages
from router.accesslog import router_line
from router.exchange import LAST_CHUNK, REPLAY_LIMIT, Exchange, Phase, new_request_id, why
from router.routes import AppRoute, AppState, Endpoint
from router.upstream import UpstreamConnection

if TYPE_CHECKING:
    from router.proxy import Proxy
    from router.settings import RouterSettings

log = logging.getLogger(__name__)

# Body bytes buffered for an exchange not yet attached to an upstream before
# the client is paused (a wake can take seconds; uploads must not pile up).
PENDING_LIMIT = 256 * 1024
# Pipelined requests parsed ahead of the one being served before reading pauses.
PIPELINE_LIMIT = 16
# Seconds a closing connection keeps draining an unread request body (nginx: 5 s).
LINGER = 5.0


class ClientConnection(asyncio.Protocol):
    """One client connection (usually from the ingress): parse, queue, serve in order.

    Each request's ``Exchange`` answers through this connection as its
    ``Downstream`` (router/exchange.py).
    """

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = "-"
        self.local_port = 0
        self.parsing: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.active: Exchange | None = None
        self.closed = False
        self.broken: pages.ErrorPage | None = None
        self.limit_error: pages.ErrorPage | None = None
        self.head_bytes = 0
        self.last_active = proxy.loop.time()
        self.upgrading: list[bytes] | None = None
        self.tunnel: UpstreamConnection | None = None
        self._paused: set[str] = set()
        self._corked: list[bytes] | None = None
        #: When a lingering close began (loop time), or None.
        self.lingering: float | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0])
        sock = transport.get_extra_info("sockname")
        if sock:
            self.local_port = int(sock[1])
        self.proxy.connections.add(self)
        self.proxy.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        proxy = self.proxy
        proxy.connections.discard(self)
        proxy.stats.connections -= 1
        if not proxy.connections:
            proxy.all_closed.set()
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            tunnel.close()
            self._end_tunnel()
        ex = self.active
        if ex is not None and ex.phase is not Phase.DONE:
            ex.status = 499
            ex.error = pages.CLIENT_INTERRUPTED
            self.finish(ex, abort=True)
        self.queue.clear()

    def close(self) -> None:
        """Close by lingering, as nginx does.

        Closing a socket with unread bytes makes the kernel send RST, which can
        destroy the response still in flight to the client (a 413, an early
        answer to an upload, a 431 to a header still arriving). So: send FIN,
        keep reading and dropping, close when the client does or after
        ``LINGER`` seconds. A client that reads its answer closes at once.
        """
        transport = self.transport
        if transport is None or self.closed:
            return
        if self._corked:  # what the response wrote so far goes out before the FIN
            transport.write(b"".join(self._corked))
            self._corked = []
        if self.lingering is None and transport.can_write_eof():
            self.lingering = self.proxy.loop.time()
            transport.write_eof()
            if self._paused:
                self._paused.clear()
                transport.resume_reading()
            return
        transport.close()

    def write(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        elif self.transport is not None and not self.closed:
            self.transport.write(data)

    def cork(self, on: bool) -> None:
        """While corked, writes gather; uncorking sends them as one (a syscall per read)."""
        if on:
            if self._corked is None:
                self._corked = []
            return
        out, self._corked = self._corked, None
        if out and self.transport is not None and not self.closed:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    # -- flow control ------------------------------------------------------------------------------

    def flow(self, reason: str, go: bool) -> None:
        """Pause reading from the client while any ``reason`` holds."""
        if self.transport is None or self.closed:
            return
        if go:
            if reason in self._paused:
                self._paused.discard(reason)
                if not self._paused:
                    self.transport.resume_reading()
        else:
            if not self._paused:
                self.transport.pause_reading()
            self._paused.add(reason)

    def pause_writing(self) -> None:
        up = self.tunnel or (self.active.upstream if self.active else None)
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.tunnel or (self.active.upstream if self.active else None)
        if up is not None and up.transport is not None:
            up.transport.resume_reading()

    # -- bytes in --------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.lingering is not None:
            return
        if self.tunnel is not None:
            if self.tunnel.transport is not None:
                self.tunnel.transport.write(data)
            return
        if self.upgrading is not None:
            self.upgrading.append(data)
            if sum(map(len, self.upgrading)) > PENDING_LIMIT:
                self.flow("upgrade", False)
            return
        if self.broken is not None:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            ex = self.parsing
            if ex is not None:  # a body-less upgrade request ends with its head
                ex.body_done = True
                self.parsing = None
            self.upgrading = [data[exc.args[0] :]]
        except httptools.HttpParserError as exc:
            self.reject(self.limit_error or pages.BAD_REQUEST, str(exc))
            if self.active is None and self.queue:  # good requests before the bad one
                self.serve_next()
            return
        if self.parsing is not None and not self.parsing.head:
            # Still inside a head: llhttp buffers a header until it ends, so bound it here.
            self.head_bytes += len(data)
            settings = self.proxy.settings
            if self.head_bytes > settings.max_request_line + settings.max_header_bytes + 1024:
                self.reject(pages.HEADERS_TOO_LARGE, "request head over the limit")
                return
        if self.active is None and self.queue:
            self.serve_next()

    def on_message_begin(self) -> None:
        now = self.proxy.loop.time()
        self.parsing = Exchange(self, now)
        self.last_active = now

    def on_url(self, url: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        ex.url += url
        if len(ex.url) > self.proxy.settings.max_request_line:
            self.limit_error = pages.URI_TOO_LONG
            raise ValueError("request target over the limit")

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        ex.headers.append((name, value))

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        size = sum(len(n) + len(v) + 4 for n, v in ex.headers)
        if size > self.proxy.settings.max_header_bytes:
            self.limit_error = pages.HEADERS_TOO_LARGE
            raise ValueError("request headers over the limit")
        parser = self.parser
        ex.method = parser.get_method().decode("ascii")
        ex.version = parser.get_http_version()
        ex.keep_alive = parser.should_keep_alive()
        ex.upgrade = parser.should_upgrade()
        ex.prepare(self.peer, self.local_port, self.proxy.settings)
        ex.phase = Phase.QUEUED
        self.head_bytes = 0
        self.queue.append(ex)
        if len(self.queue) > PIPELINE_LIMIT:
            self.flow("pipeline", False)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        ex.bytes_in += len(body)
        if ex.phase is Phase.DONE:
            return
        framed = ex.frame(body)
        if ex.replay is not None:
            ex.replay.append(framed)
            ex.replay_size += len(framed)
            if ex.replay_size > REPLAY_LIMIT:
                ex.replay = None
        up = ex.upstream
        if up is not None and up.transport is not None:
            up.transport.write(framed)
        else:
            ex.pending.append(framed)
            ex.pending_size += len(framed)
            if ex.pending_size > PENDING_LIMIT:
                self.flow("pending", False)

    def on_message_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        ex.body_done = True
        self.parsing = None
        if ex.sent_at is not None:  # the app's 30 s start once it has the whole request
            ex.sent_at = self.proxy.loop.time()
        if ex.chunked_in and ex.phase is not Phase.DONE:
            if ex.replay is not None:
                ex.replay.append(LAST_CHUNK)
            up = ex.upstream
            if up is not None and up.transport is not None:
                up.transport.write(LAST_CHUNK)
            else:
                ex.pending.append(LAST_CHUNK)

    # -- serving -------------------------------------------------------------------------------

    def serve_next(self) -> None:
        ex = self.queue.popleft()
        ex.phase = Phase.SERVING
        self.active = ex
        if len(self.queue) <= PIPELINE_LIMIT:
            self.flow("pipeline", True)
        proxy = self.proxy
        route = proxy.routes.table.resolve(ex.host) if ex.host else None
        if route is None:
            self.fail(ex, pages.NO_SUCH_APP if ex.host else pages.BAD_REQUEST)
            return
        ex.route = route
        ex.app = route.name
        proxy.activity.begin(route.name, proxy.loop.time())
        if route.maintenance:
            # Heroku's H80: the router answers, nothing is woken or forwarded.
            self.fail(ex, pages.MAINTENANCE)
            return
        endpoints = route.endpoints
        if endpoints:
            # The hot path: the round robin's endpoint, on an idle pooled connection. Only
            # its own (nginx's way): taking any warm one would keep a steady load on the
            # endpoints it first warmed, and a process added by a scale-up would get none.
            start = ex.rr_start = proxy.next_index(route.name)
            endpoint = endpoints[start % len(endpoints)]
            conn = proxy.pool.take(endpoint)
            if conn is not None:
                self.attach(ex, conn, endpoint)
                return
        self.start_task(ex, self.connect_and_attach(ex, route))

    def start_task(self, ex: Exchange, coro: Coroutine[Any, Any, None]) -> None:
        ex.task = self.proxy.loop.create_task(coro)

    async def connect_and_attach(self, ex: Exchange, route: AppRoute) -> None:
        proxy = self.proxy
        if not route.endpoints:
            woken = await self.hold(ex, route)
            if woken is None:
                return
            route = woken
        endpoint, conn, refused = await self.open(ex, route)
        if conn is None and refused and proxy.waker is not None and ex.hold_start is None:
            # Every endpoint refused: the app is going to sleep under us. Hold and re-wake.
            woken = await self.hold(ex, route, refused=frozenset(route.endpoints))
            if woken is None:
                return
            endpoint, conn, refused = await self.open(ex, woken)
        if ex.phase is Phase.DONE:
            if conn is not None:
                conn.close()
            return
        if conn is None or endpoint is None:
            self.fail(ex, pages.CONNECTION_REFUSED, detail=refused)
            return
        self.attach(ex, conn, endpoint)

    async def open(
        self, ex: Exchange, route: AppRoute
    ) -> tuple[Endpoint | None, UpstreamConnection | None, str]:
        """A connection to one of the route's endpoints; the last failure if none."""
        proxy = self.proxy
        last = ""
        started = proxy.loop.time()
        for endpoint in proxy.order(route, ex.rr_start) if route.endpoints else []:
            conn = proxy.pool.take(endpoint)
            if conn is None:
                try:
                    conn = await proxy.connect(endpoint)
                except (OSError, TimeoutError) as exc:
                    proxy.stats.connect_errors[route.name] = (
                        proxy.stats.connect_errors.get(route.name, 0) + 1
                    )
                    last = f"{endpoint.dyno} {endpoint.host}:{endpoint.port}: {why(exc)}"
                    continue
            ex.connect_ms = round((proxy.loop.time() - started) * 1000)
            return endpoint, conn, ""
        return None, None, last or "no endpoints"

    async def hold(
        self, ex: Exchange, route: AppRoute, refused: frozenset[Endpoint] = frozenset()
    ) -> AppRoute | None:
        """Wait for the app to have endpoints; answer the request's error and None if not."""
        proxy = self.proxy
        app = route.name
        if route.state is AppState.CRASHED:
            self.fail(ex, pages.APP_CRASHED, detail=route.reason)
            return None
        if proxy.waker is None:
            self.fail(ex, pages.NO_WEB_PROCESSES)
            return None
        if not proxy.holder.admit(app, route.max_held):
            self.fail(ex, pages.BACKLOG_TOO_DEEP)
            return None
        if ex.hold_start is None:
            ex.hold_start = proxy.loop.time()
        try:
            proxy.wake(app)
            woken = await proxy.routes.wait_for(app, route.boot_timeout, refused)
        except TimeoutError:
            self.fail(ex, pages.BOOT_TIMEOUT)
            return None
        finally:
            proxy.holder.release(app)
        if woken.state is AppState.CRASHED or not woken.endpoints:
            self.fail(ex, pages.APP_CRASHED, detail=woken.reason)
            return None
        return woken

    def retry(self, ex: Exchange) -> None:
        """Send ``ex`` again on a fresh connection (the app closed a reused one under it)."""
        ex.phase = Phase.SERVING
        self.start_task(ex, self._retry(ex))

    async def _retry(self, ex: Exchange) -> None:
        assert ex.route is not None
        assert ex.replay is not None
        endpoint, conn, refused = await self.open(ex, ex.route)
        if ex.phase is Phase.DONE:
            if conn is not None:
                conn.close()
            return
        if conn is None or endpoint is None:
            self.fail(ex, pages.CLOSED_WITHOUT_RESPONSE, detail=refused)
            return
        ex.pending = list(ex.replay)
        self.attach(ex, conn, endpoint)

    def attach(self, ex: Exchange, conn: UpstreamConnection, endpoint: Endpoint) -> None:
        ex.phase = Phase.FORWARDED
        ex.upstream = conn
        ex.endpoint = endpoint
        ex.dyno = endpoint.dyno
        conn.begin(ex)
        transport = conn.transport
        assert transport is not None
        if ex.pending:
            transport.writelines([ex.head, *ex.pending])
            ex.pending = []
            ex.pending_size = 0
            self.flow("pending", True)
        else:
            transport.write(ex.head)
        ex.sent_at = self.proxy.loop.time()

    def open_tunnel(self, ex: Exchange, conn: UpstreamConnection, rest: bytes) -> None:
        """101 Switching Protocols: from here on, bytes pass both ways untouched."""
        proxy = self.proxy
        self.tunnel = conn
        ex.phase = Phase.TUNNEL
        conn.tunnel = self.write
        conn.handler = _TunnelEnd(self)
        if rest:
            self.write(rest)
        early, self.upgrading = self.upgrading or [], None
        self.flow("upgrade", True)
        if early and conn.transport is not None:
            conn.transport.writelines(early)
        proxy.stats.websockets += 1
        self.log_exchange(ex)  # logged at the upgrade, as Heroku does; in flight until closed

    def tunnel_closed(self) -> None:
        """The app closed its end of the tunnel: close ours."""
        self.tunnel = None
        self._end_tunnel()
        self.close()

    def _end_tunnel(self) -> None:
        ex = self.active
        if ex is not None and ex.phase is Phase.TUNNEL:
            ex.phase = Phase.DONE
            self.active = None
            self.proxy.stats.websockets -= 1
            if ex.app:
                self.proxy.activity.end(ex.app, self.proxy.loop.time())

    # -- ends --------------------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self.proxy.draining

    def held_header(self, ex: Exchange) -> bytes:
        proxy = self.proxy
        if ex.wake_ms is None:
            assert ex.hold_start is not None
            ex.wake_ms = round((proxy.loop.time() - ex.hold_start) * 1000)
            proxy.stats.wake(ex.app, ex.wake_ms / 1000)
        return b"Slipway-Wake: %dms\r\n" % ex.wake_ms if proxy.settings.wake_header else b""

    def complete(self, ex: Exchange, conn: UpstreamConnection, reusable: bool) -> None:
        proxy = self.proxy
        if reusable:
            proxy.pool.give_back(conn, proxy.loop.time())
        else:
            conn.close()
        self.finish(ex)

    def fail(self, ex: Exchange, error: pages.ErrorPage, detail: str = "") -> None:
        """Answer ``ex`` with the router's own error page."""
        if ex.phase is Phase.DONE:
            return
        ex.error = error
        if ex.upstream is not None:
            ex.upstream.abort()
            ex.upstream = None
        if ex.phase >= Phase.RESPONDING:  # too late for a page: cut the response
            ex.close_after = True
            self.finish(ex, abort=True)
            return
        ex.status = error.status
        if not ex.body_done or not ex.keep_alive or self.proxy.draining:
            ex.close_after = True
        if error.status != 499:
            body = pages.render(
                error,
                ex.request_id or new_request_id(),
                json_body=ex.accept_json,
                close=ex.close_after,
                detail=detail,
            )
            ex.bytes_out = len(body)
            self.write(body)
        self.finish(ex)

    def finish(self, ex: Exchange, *, abort: bool = False) -> None:
        if ex.phase is Phase.DONE:
            return
        tunneled = ex.phase is Phase.TUNNEL
        ex.phase = Phase.DONE
        ex.sent_at = None
        if ex.task is not None and not ex.task.done() and ex.task is not asyncio.current_task():
            ex.task.cancel()
        if ex.upstream is not None:
            ex.upstream.abort()
            ex.upstream = None
        proxy = self.proxy
        if ex.app and not tunneled:
            proxy.activity.end(ex.app, proxy.loop.time())
        if not tunneled:
            self.log_exchange(ex)
        if self.active is ex:
            self.active = None
        if abort or self.closed:
            if self.transport is not None and not self.closed:
                self.transport.abort()
            return
        self.last_active = proxy.loop.time()
        if ex.close_after or not ex.keep_alive or proxy.draining:
            self.close()
            return
        if self.queue:
            self.serve_next()
        elif self.broken is not None:
            self.reject(self.broken, "malformed pipelined request")

    def log_exchange(self, ex: Exchange) -> None:
        proxy = self.proxy
        now = proxy.loop.time()
        service = now - ex.start
        error = ex.error
        code = error.code if error is not None else ex.error_code
        desc = error.desc if error is not None else ("Server request interrupted" if code else "")
        if error is not None:
            proxy.stats.error(ex.app, error.code)
        proxy.stats.request(ex.app, ex.method, ex.status, service, ex.bytes_in, ex.bytes_out)
        path = ex.url.decode("latin-1")
        proxy.sink.emit(
            ex.app,
            router_line(
                error_code=code,
                error_desc=desc,
                method=ex.method,
                path=path,
                host=ex.host,
                app=ex.app or "-",
                request_id=ex.request_id,
                fwd=ex.fwd,
                dyno=ex.dyno,
                connect_ms=ex.connect_ms,
                service_ms=round(service * 1000),
                status=ex.status,
                bytes_out=ex.bytes_out,
                protocol=proxy.settings.protocol,
                wake_ms=ex.wake_ms,
            ),
        )

    def reject(self, error: pages.ErrorPage, reason: str) -> None:
        """A malformed request: answer, close, forward nothing."""
        bad, self.parsing = self.parsing, None
        if bad is not None:
            if bad in self.queue:  # its head parsed, its body did not: never forwarded
                self.queue.remove(bad)
            elif bad is self.active and bad.phase is not Phase.DONE:
                # Its body turned malformed mid-stream: the app is cut off before the end.
                bad.close_after = True
                if bad.phase >= Phase.FORWARDED and error is pages.BAD_REQUEST:
                    error = pages.BAD_REQUEST_BODY  # the page must not say it was not sent
                self.fail(bad, error, detail=reason)
                return
        if self.queue or (self.active is not None and self.active.phase is not Phase.DONE):
            # Answer in order: after the requests before it.
            self.broken = error
            self.flow("broken", False)
            return
        log.info(
            "rejected malformed request",
            extra={"peer": self.peer, "status": error.status, "reason": reason},
        )
        self.proxy.stats.error("", error.code)
        self.write(pages.render(error, new_request_id(), json_body=False, close=True))
        self.close()
        self.broken = error

    def check_timeouts(self, now: float, settings: RouterSettings) -> None:
        if self.lingering is not None:
            if now - self.lingering > LINGER and self.transport is not None:
                self.transport.abort()
            return
        ex = self.active
        if ex is not None:
            waited = now - ex.sent_at if ex.sent_at is not None and ex.body_done else 0.0
            if waited > settings.upstream_timeout:
                self.fail(ex, pages.REQUEST_TIMEOUT)
            return
        if self.tunnel is not None or self.queue:
            return
        limit = settings.header_timeout if self.parsing is not None else settings.idle_timeout
        if now - self.last_active > limit or self.proxy.draining:
            self.close()


class _TunnelEnd:
    """The upstream half of a WebSocket tunnel reports only its end."""

    def __init__(self, client: ClientConnection) -> None:
        self._client = client

    def response_head(self, conn: UpstreamConnection, status: int, reason: bytes) -> None:
        pass

    def response_body(self, data: bytes) -> None:
        pass

    def response_complete(self, conn: UpstreamConnection) -> None:
        pass

    def response_upgraded(self, conn: UpstreamConnection, rest: bytes) -> None:
        pass

    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        self._client.tunnel_closed()

    def upstream_writable(self, writable: bool) -> None:
        self._client.flow("tunnel", writable)

    def cork(self, on: bool) -> None:
        pass
