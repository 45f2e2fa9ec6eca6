"""An exchange answers through its Downstream and moves through its phases (no sockets).

The client connection is the one Downstream in the router; here a recording
one stands in, so what an exchange asks of its client side is seen whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from router import pages
from router.exchange import Exchange, Phase
from router.routes import Endpoint
from router.settings import RouterSettings
from router.upstream import Pool, UpstreamConnection


@dataclass
class RecordingDownstream:
    written: list[bytes] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    draining: bool = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def cork(self, on: bool) -> None:
        pass

    def flow(self, reason: str, go: bool) -> None:
        self.calls.append(f"flow {reason} {go}")

    def held_header(self, ex: Exchange) -> bytes:
        self.calls.append("held_header")
        return b"Slipway-Wake: 5ms\r\n"

    def complete(self, ex: Exchange, conn: UpstreamConnection, reusable: bool) -> None:
        self.calls.append(f"complete reusable={reusable}")
        ex.phase = Phase.DONE

    def finish(self, ex: Exchange, *, abort: bool = False) -> None:
        self.calls.append(f"finish abort={abort}")
        ex.phase = Phase.DONE

    def fail(self, ex: Exchange, error: pages.ErrorPage, detail: str = "") -> None:
        self.calls.append(f"fail {error.code}")
        ex.phase = Phase.DONE

    def retry(self, ex: Exchange) -> None:
        self.calls.append("retry")

    def open_tunnel(self, ex: Exchange, conn: UpstreamConnection, rest: bytes) -> None:
        self.calls.append("open_tunnel")


def forwarded(
    head: bytes = b"GET / HTTP/1.1",
) -> tuple[Exchange, RecordingDownstream, UpstreamConnection]:
    down = RecordingDownstream()
    ex = Exchange(down, 0.0)
    method, url, _ = head.split(b" ")
    ex.method, ex.url = method.decode(), url
    ex.headers = [(b"Host", b"hello.test")]
    ex.prepare("127.0.0.1", 8080, RouterSettings())
    conn = UpstreamConnection(Endpoint("127.0.0.1", 1), Pool(max_idle=1, idle_timeout=1.0))
    ex.upstream = conn
    ex.phase = Phase.FORWARDED
    ex.body_done = True
    return ex, down, conn


def test_the_phases_are_ordered_so_forwarded_and_responding_read_as_comparisons() -> None:
    assert list(Phase) == sorted(Phase)
    assert Phase.HEAD < Phase.QUEUED < Phase.SERVING < Phase.FORWARDED < Phase.RESPONDING
    assert Phase.RESPONDING < Phase.TUNNEL < Phase.DONE


def test_a_response_head_moves_the_exchange_to_responding_and_goes_to_the_downstream() -> None:
    ex, down, conn = forwarded()
    conn.headers = [(b"Content-Length", b"2")]
    ex.response_head(conn, 200, b"OK")
    assert ex.phase is Phase.RESPONDING
    head = b"".join(down.written)
    assert head.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
    assert b"X-Request-Id: " + ex.request_id.encode() in head
    assert "held_header" not in down.calls  # the request was never held


def test_a_held_requests_response_carries_the_downstreams_wake_header() -> None:
    ex, down, conn = forwarded()
    ex.hold_start = 0.0
    conn.headers = [(b"Content-Length", b"0")]
    ex.response_head(conn, 200, b"OK")
    assert b"Slipway-Wake: 5ms\r\n" in b"".join(down.written)


def test_a_draining_downstream_makes_the_response_close_its_connection() -> None:
    ex, down, conn = forwarded()
    down.draining = True
    conn.headers = [(b"Content-Length", b"0")]
    ex.response_head(conn, 200, b"OK")
    assert b"Connection: close\r\n" in b"".join(down.written)
    assert ex.close_after


def test_a_reused_connection_lost_before_any_answer_asks_the_downstream_to_retry_once() -> None:
    ex, down, conn = forwarded()
    conn.reused = True
    ex.upstream_lost(conn, ConnectionResetError())
    assert down.calls == ["retry"]
    ex.upstream = conn
    ex.upstream_lost(conn, ConnectionResetError())
    assert down.calls == ["retry", "fail H13"]


def test_a_response_cut_after_its_head_is_finished_by_abort_as_h18() -> None:
    ex, down, conn = forwarded()
    conn.headers = [(b"Content-Length", b"10")]
    ex.response_head(conn, 200, b"OK")
    ex.upstream_lost(conn, ConnectionResetError())
    assert down.calls == ["finish abort=True"]
    assert ex.error_code == "H18"


def test_nothing_reaches_the_downstream_once_the_exchange_is_done() -> None:
    ex, down, conn = forwarded()
    ex.phase = Phase.DONE
    ex.response_body(b"late")
    ex.upstream_lost(conn, None)
    assert (down.written, down.calls) == ([], [])
