"""One request/response: the head as forwarded, the response as it comes back.

An ``Exchange`` is the upstream connection's ``ResponseHandler``: it writes
the response head and body straight to its ``Downstream`` (the client
connection), re-framed (chunked to HTTP/1.1 clients when the app gave no
length) and with the hop-by-hop headers removed, ``Via`` appended and the
request id returned. It knows the client side only through ``Downstream``,
and where it stands only through its ``Phase``.
"""

from __future__ import annotations

import asyncio
import random
import re
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

from router import pages

if TYPE_CHECKING:
    from router.routes import AppRoute, Endpoint
    from router.settings import RouterSettings
    from router.upstream import UpstreamConnection

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9+/=-]{20,200}$")
# Bytes of a request body kept so a request on a reused connection that the
# app closed under it can be sent again; bigger bodies are not retried.
REPLAY_LIMIT = 64 * 1024
_CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def new_request_id() -> str:
    """32 hex digits, as Heroku's request ids. From the process's Mersenne Twister, not
    os.urandom: an id correlates log lines and is no secret, and a getrandom(2) per
    request was 3.5% of the router's time. ``random`` reseeds itself in a forked
    worker, so workers do not repeat each other's ids."""
    return f"{random.getrandbits(128):032x}"


class BadRequest(ValueError):
    """A head llhttp accepts but a router must not forward (raised inside the parser)."""


class Phase(IntEnum):
    """Where an exchange stands; it only ever moves forward, except a retry.

    Ordered, so "the head went to an app" is ``phase >= FORWARDED``. A retry
    (the app closed a reused connection before answering) goes from FORWARDED
    back through SERVING to FORWARDED on a fresh connection.
    """

    #: The request head is still being read.
    HEAD = 0
    #: The head is parsed; earlier requests on the connection are served first.
    QUEUED = 1
    #: Routed: held while the app wakes, or connecting to an endpoint.
    SERVING = 2
    #: The head went to an app: a body failing after this was seen in part upstream.
    FORWARDED = 3
    #: The response head went to the client: too late for an error page.
    RESPONDING = 4
    #: 101 Switching Protocols: bytes pass both ways until either side closes.
    TUNNEL = 5
    #: Answered (or cut) and logged; nothing more happens to it.
    DONE = 6


class Downstream(Protocol):
    """The client side of an exchange: where its response goes, and who ends it.

    The client connection (client.py) is the one implementation; the exchange
    calls nothing else of it or of the proxy behind it.
    """

    def write(self, data: bytes) -> None:
        """Send bytes to the client (gathered while corked)."""

    def cork(self, on: bool) -> None:
        """Gather writes while on; send them as one write when turned off."""

    def flow(self, reason: str, go: bool) -> None:
        """Pause reading from the client while any ``reason`` says stop."""

    @property
    def draining(self) -> bool:
        """The router is shutting down: every response closes its connection."""

    def held_header(self, ex: Exchange) -> bytes:
        """Header lines for a response whose request was held (its wake time, recorded once)."""

    def complete(self, ex: Exchange, conn: UpstreamConnection, reusable: bool) -> None:
        """The response went through whole: the upstream back to the pool if ``reusable``."""

    def finish(self, ex: Exchange, *, abort: bool = False) -> None:
        """End the exchange (log it); ``abort`` cuts the client connection."""

    def fail(self, ex: Exchange, error: pages.ErrorPage, detail: str = "") -> None:
        """Answer with the router's own error page (or cut, once the response began)."""

    def retry(self, ex: Exchange) -> None:
        """Send the request again on a fresh connection (it fits the replay buffer)."""

    def open_tunnel(self, ex: Exchange, conn: UpstreamConnection, rest: bytes) -> None:
        """101 Switching Protocols: splice the client and ``conn`` together."""


class Exchange:
    """One request/response on a client connection.

    Where it stands is its ``phase``; the other flags are facts about its
    framing (chunked in or out, keep-alive, upgrade), not steps. Fields
    default at class level: most requests set few of them, and a plain
    attribute write is cheaper than thirty in ``__init__``.
    """

    method = ""
    version = "1.1"
    host = ""
    fwd = ""
    request_id = ""
    accept_json = False
    keep_alive = True
    upgrade = False
    chunked_in = False
    head = b""
    pending_size = 0
    replay_size = 0
    body_done = False
    upstream: UpstreamConnection | None = None
    route: AppRoute | None = None
    endpoint: Endpoint | None = None
    app = ""
    dyno = "router"
    connect_ms = 0
    status = 0
    bytes_in = 0
    bytes_out = 0
    error: pages.ErrorPage | None = None
    error_code = ""
    chunked_out = False
    until_close = False
    close_after = False
    hold_start: float | None = None
    wake_ms: int | None = None
    sent_at: float | None = None
    task: asyncio.Task[None] | None = None
    retried = False
    #: Where round robin started for this request, so a retry moves on from there.
    rr_start = 0

    def __init__(self, downstream: Downstream, now: float) -> None:
        self.downstream = downstream
        self.phase = Phase.HEAD
        self.start = now
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.pending: list[bytes] = []
        self.replay: list[bytes] | None = []

    # -- the request head, as forwarded --------------------------------------------------------

    def prepare(self, peer: str, local_port: int, settings: RouterSettings) -> None:
        """Read the head's special headers and build the head sent upstream."""
        parts: list[bytes] = [self.method.encode("latin-1"), b" ", self.url, b" HTTP/1.1\r\n"]
        xff = proto = fhost = fport = via = b""
        connection_tokens: list[bytes] = []
        upgrade_value = b""
        request_id = b""
        length = -1
        underscores = settings.underscores_in_headers
        url = self.url
        if not url.startswith(b"/") and not (url == b"*" and self.method == "OPTIONS"):
            # Absolute-form and CONNECT targets name a host of their own: an app
            # could read a different one than the router routed on.
            raise BadRequest("request target must be a path (origin-form)")
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"host":
                if self.host:
                    raise BadRequest("more than one Host header")
                self.host = value.decode("latin-1")
                parts += (name, b": ", value, _CRLF)
            elif lname in HOP_BY_HOP:
                if lname == b"connection":
                    connection_tokens += [t.strip().lower() for t in value.split(b",")]
                elif lname == b"upgrade":
                    upgrade_value = value
                elif lname == b"transfer-encoding":
                    self.chunked_in = True
            elif lname == b"x-request-id":
                request_id = value.strip()
            elif lname == b"x-forwarded-for":
                xff = xff + b", " + value if xff else value
            elif lname == b"x-forwarded-proto":
                proto = value
            elif lname == b"x-forwarded-host":
                fhost = value
            elif lname == b"x-forwarded-port":
                fport = value
            elif lname == b"via":
                via = value
            elif lname == b"content-length":
                # llhttp checked it is digits (and refused a second one): sent on as the
                # number it read, so "0100" cannot reach an app that reads octal as 64.
                length = int(value)
            elif b"_" in name and not underscores:
                # Dropped as nginx does (underscores_in_headers off): an app that maps _ to -
                # would otherwise see a Transfer_Encoding next to the Content-Length.
                continue
            else:
                if lname == b"accept" and b"json" in value:
                    self.accept_json = True
                parts += (name, b": ", value, _CRLF)
        extra = {t for t in connection_tokens if t not in (b"close", b"keep-alive", b"upgrade")}
        if extra:  # headers the client named as hop-by-hop in Connection
            kept = [p for p in _header_pairs(parts[4:]) if p[0].lower() not in extra]
            parts = parts[:4] + [b for n, v in kept for b in (n, b": ", v, _CRLF)]
        if _REQUEST_ID.match(request_id):
            self.request_id = request_id.decode("ascii")
        else:
            self.request_id = new_request_id()
        # Logged as Heroku does: the client as the ingress saw it. Sent on with the ingress added.
        self.fwd = xff.decode("latin-1") if xff else peer
        forwarded_for = xff + b", " + peer.encode() if xff else peer.encode()
        parts += (
            b"X-Request-Id: ",
            self.request_id.encode(),
            b"\r\nX-Forwarded-For: ",
            forwarded_for,
            b"\r\nX-Forwarded-Proto: ",
            proto or settings.protocol.encode(),
            b"\r\nX-Forwarded-Host: ",
            fhost or self.host.encode("latin-1"),
            b"\r\nX-Forwarded-Port: ",
            fport or str(local_port).encode(),
            b"\r\nVia: ",
            via + b", 1.1 slipway" if via else b"1.1 slipway",
            _CRLF,
        )
        if self.upgrade and upgrade_value:
            parts += (b"Connection: Upgrade\r\nUpgrade: ", upgrade_value, _CRLF)
        else:
            self.upgrade = False
        if self.chunked_in:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif length >= 0:
            parts.append(b"Content-Length: %d\r\n" % length)
        parts.append(_CRLF)
        self.head = b"".join(parts)

    def frame(self, data: bytes) -> bytes:
        """A body piece as it goes upstream: re-chunked when the client sent chunks."""
        if self.chunked_in:
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data

    # -- the response (ResponseHandler) ----------------------------------------------------------

    def response_head(self, conn: UpstreamConnection, status: int, reason: bytes) -> None:
        downstream = self.downstream
        self.sent_at = None
        if self.phase is Phase.DONE:
            conn.abort()
            return
        parts, has_length, chunked, upgrade = _scan_response(status, reason, conn.headers)
        if 100 <= status < 200 and status != 101:
            parts.append(_CRLF)
            downstream.write(b"".join(parts))
            return
        self.status = status
        no_body = self.method == "HEAD" or status in (204, 304)
        parts += (b"X-Request-Id: ", self.request_id.encode(), _CRLF)
        if self.hold_start is not None:
            parts.append(downstream.held_header(self))
        if status == 101 and self.upgrade:
            parts += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, _CRLF)
        else:
            if self.upgrade:  # the app refused the upgrade: this connection ends here
                self.close_after = True
            if not no_body and not has_length:
                self.until_close = not chunked
                if self.version == "1.1":
                    self.chunked_out = True
                    parts.append(b"Transfer-Encoding: chunked\r\n")
                else:
                    self.close_after = True
            if self.close_after or not self.keep_alive or downstream.draining:
                parts.append(b"Connection: close\r\n")
                self.close_after = True
            elif self.version == "1.0":  # HTTP/1.0 keeps a connection only when told so
                parts.append(b"Connection: keep-alive\r\n")
        parts.append(_CRLF)
        self.phase = Phase.RESPONDING
        downstream.write(b"".join(parts))
        if no_body:
            self.response_complete(conn)

    def response_body(self, data: bytes) -> None:
        if self.phase is Phase.DONE:
            return
        self.bytes_out += len(data)
        if self.chunked_out:
            self.downstream.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.downstream.write(data)

    def response_complete(self, conn: UpstreamConnection) -> None:
        if self.phase is Phase.DONE or (self.status == 101 and self.upgrade):
            return
        if self.chunked_out:
            self.downstream.write(LAST_CHUNK)
        self.upstream = None
        reusable = conn.keep_alive and self.body_done and not self.until_close
        self.downstream.complete(self, conn, reusable)

    def response_upgraded(self, conn: UpstreamConnection, rest: bytes) -> None:
        if self.phase is Phase.DONE or self.status != 101 or not self.upgrade:
            conn.abort()
            return
        self.upstream = None
        self.downstream.open_tunnel(self, conn, rest)

    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        if self.phase is Phase.DONE or self.upstream is not conn:
            return
        self.upstream = None
        downstream = self.downstream
        if self.phase < Phase.RESPONDING:
            if conn.reused and self.replay is not None and not self.retried:
                # The app closed an idle keep-alive connection as we reused it: once more, fresh.
                self.retried = True
                downstream.retry(self)
                return
            downstream.fail(self, pages.CLOSED_WITHOUT_RESPONSE, detail=why(exc))
            return
        if self.until_close and exc is None:  # EOF is how this response ends
            if self.chunked_out:
                downstream.write(LAST_CHUNK)
            downstream.finish(self)
            return
        self.error_code = "H18"  # the app's response was cut short
        self.close_after = True
        downstream.finish(self, abort=True)

    def upstream_writable(self, writable: bool) -> None:
        self.downstream.flow("upstream", writable)

    def cork(self, on: bool) -> None:
        self.downstream.cork(on)


def why(exc: Exception | None) -> str:
    return "" if exc is None else f"{type(exc).__name__}: {exc}"


def _header_pairs(flat: list[bytes]) -> list[tuple[bytes, bytes]]:
    return [(flat[i], flat[i + 2]) for i in range(0, len(flat), 4)]


# Response headers the scan handles itself rather than copying through.
_RESPONSE_SPECIAL = HOP_BY_HOP | {b"x-request-id", b"via", b"content-length"}
_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})


def _scan_response(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[list[bytes], bool, bool, bytes]:
    """The client-side head (without its end), in one pass over the app's headers.

    Returns the head's parts, whether the app sent a Content-Length, whether
    it sent chunks, and its Upgrade value. Hop-by-hop headers (and those the
    app named in Connection) stop here; ``Via`` gets slipway appended.
    """
    parts = [b"HTTP/1.1 %d %b\r\n" % (status, reason or b"-")]
    has_length = chunked = False
    via = b"1.1 slipway"
    upgrade = named = b""
    for name, value in headers:
        lname = name.lower()
        if lname in _RESPONSE_SPECIAL:
            if lname == b"content-length":
                has_length = True
                parts += (name, b": ", value, _CRLF)
            elif lname == b"transfer-encoding":
                chunked = True
            elif lname == b"connection":
                named += b"," + value
            elif lname == b"via":
                via = value + b", 1.1 slipway"
            elif lname == b"upgrade":
                upgrade = value
            continue
        parts += (name, b": ", value, _CRLF)
    if named:
        tokens = {t.strip().lower() for t in named.split(b",")} - _CONNECTION_OPTIONS - {b""}
        if tokens:  # rare: the app named headers of its own as hop-by-hop
            kept = [p for p in _header_pairs(parts[1:]) if p[0].lower() not in tokens]
            parts = parts[:1] + [b for n, v in kept for b in (n, b": ", v, _CRLF)]
    parts += (b"Via: ", via, _CRLF)
    return parts, has_length, chunked, upgrade
