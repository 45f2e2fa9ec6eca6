"""Ambiguous framing is answered 400 and never reaches an app (request smuggling)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from router.routes import AppRoute, Endpoint
from tests.router.conftest import RunningRouter, send, start_router
from tests.router.rawapps import RawApp

HEAD = b"POST / HTTP/1.1\r\nHost: hello.test\r\n"

VECTORS = {
    "content-length and transfer-encoding": HEAD
    + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "transfer-encoding and content-length": HEAD
    + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
    "two differing content-lengths": HEAD + b"Content-Length: 3\r\nContent-Length: 44\r\n\r\nabc",
    "invalid chunk size": HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk size overflow": HEAD
    + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n",
    "chunked not last": HEAD + b"Transfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "transfer-encoding without chunked": HEAD + b"Transfer-Encoding: gzip\r\n\r\nabc",
    "xchunked": HEAD + b"Transfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "space before colon": HEAD + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": HEAD + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "bare LF": b"POST / HTTP/1.1\nHost: hello.test\nContent-Length: 3\n\nabc",
    "signed content-length": HEAD + b"Content-Length: +3\r\n\r\nabc",
    "nul in a header": HEAD + b"X-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "two hosts": b"GET / HTTP/1.1\r\nHost: hello.test\r\nHost: evil.test\r\n\r\n",
    "absolute-form target": b"GET http://evil.test/ HTTP/1.1\r\nHost: hello.test\r\n\r\n",
    "connect": b"CONNECT evil.test:443 HTTP/1.1\r\nHost: hello.test\r\n\r\n",
    "two transfer-encodings": HEAD
    + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[RunningRouter, RawApp]]:
    raw = await RawApp("record").start()
    r = await start_router(
        [AppRoute("hello", hosts=("hello.test",), endpoints=(Endpoint("127.0.0.1", raw.port),))]
    )
    yield r, raw
    await r.router.stop(grace=0.5)
    await raw.stop()


async def test_a_well_framed_post_does_reach_the_app(
    recorded: tuple[RunningRouter, RawApp],
) -> None:
    """The control: the recorder sees what it is sent."""
    r, raw = recorded
    answer = await send(r.port, HEAD + b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")
    assert answer.startswith(b"HTTP/1.1 200")
    assert raw.received.endswith(b"abc")


@pytest.mark.parametrize("vector", list(VECTORS))
async def test_an_ambiguous_request_is_400_closed_and_never_forwarded(
    recorded: tuple[RunningRouter, RawApp], vector: str
) -> None:
    r, raw = recorded
    answer = await send(r.port, VECTORS[vector])
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"Connection: close" in answer
    await asyncio.sleep(0.05)
    assert raw.received == b"", raw.received
    assert raw.connections == 0


async def test_a_bad_request_pipelined_after_a_good_one_is_answered_after_it(
    recorded: tuple[RunningRouter, RawApp],
) -> None:
    r, raw = recorded
    good = b"GET /first HTTP/1.1\r\nHost: hello.test\r\n\r\n"
    answer = await send(r.port, good + VECTORS["content-length and transfer-encoding"])
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 400" in answer
    assert raw.received.count(b"HTTP/1.1") == 1  # only the good one
