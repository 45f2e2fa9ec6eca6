"""What the router sends on is what it parsed: canonical lengths, no underscore header names.

Each test is proven at a recording upstream: a raw TCP server on loopback that
keeps the exact bytes it received.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner

from router import cli
from router.routes import AppRoute, Endpoint
from router.settings import RouterSettings
from tests.helpers import eventually
from tests.router.conftest import RunningRouter, send, start_router
from tests.router.rawapps import RawApp

HEAD = b"POST / HTTP/1.1\r\nHost: hello.test\r\nConnection: close\r\n"


async def _routed(mode: str, *, underscores: bool = False) -> tuple[RunningRouter, RawApp]:
    raw = await RawApp(mode).start()
    r = await start_router(
        [AppRoute("hello", hosts=("hello.test",), endpoints=(Endpoint("127.0.0.1", raw.port),))],
        underscores_in_headers=underscores,
    )
    return r, raw


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[RunningRouter, RawApp]]:
    r, raw = await _routed("record")
    yield r, raw
    await r.router.stop(grace=0.5)
    await raw.stop()


def head_of(received: bytes) -> bytes:
    return received.partition(b"\r\n\r\n")[0]


class TestContentLength:
    async def test_a_length_with_leading_zeros_is_sent_as_the_number_it_was_read_as(
        self, recorded: tuple[RunningRouter, RawApp]
    ) -> None:
        """Attack: Content-Length: 0100 forwarded verbatim; an app reading it as octal takes
        64 bytes and runs the other 36 as a second request. The app must see 100."""
        r, raw = recorded
        inner = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
        body = b"x" * 64 + inner.ljust(36, b"y")
        assert len(body) == 100
        answer = await send(r.port, HEAD + b"Content-Length: 0100\r\n\r\n" + body)
        assert answer.startswith(b"HTTP/1.1 200")
        await eventually(lambda: raw.received.endswith(body))
        head = head_of(bytes(raw.received))
        assert b"\r\nContent-Length: 100\r\n" in head + b"\r\n"
        assert b"0100" not in head
        assert head.lower().count(b"content-length") == 1

    async def test_a_length_with_trailing_spaces_is_sent_bare(
        self, recorded: tuple[RunningRouter, RawApp]
    ) -> None:
        r, raw = recorded
        answer = await send(r.port, HEAD + b"Content-Length: 3   \r\n\r\nabc")
        assert answer.startswith(b"HTTP/1.1 200")
        await eventually(lambda: raw.received.endswith(b"abc"))
        assert b"\r\nContent-Length: 3\r\n" in head_of(bytes(raw.received)) + b"\r\n"

    async def test_connection_cannot_name_content_length_away(
        self, recorded: tuple[RunningRouter, RawApp]
    ) -> None:
        """Attack: "Connection: Content-Length" asks the proxy to strip the length as a
        hop-by-hop header, leaving the body to be read as the next request. It stays."""
        r, raw = recorded
        answer = await send(
            r.port,
            b"POST / HTTP/1.1\r\nHost: hello.test\r\nConnection: close, Content-Length\r\n"
            b"Content-Length: 3\r\n\r\nabc",
        )
        assert answer.startswith(b"HTTP/1.1 200")
        await eventually(lambda: raw.received.endswith(b"abc"))
        assert b"\r\nContent-Length: 3\r\n" in head_of(bytes(raw.received)) + b"\r\n"

    async def test_a_body_less_get_gets_no_length_added(
        self, recorded: tuple[RunningRouter, RawApp]
    ) -> None:
        r, raw = recorded
        answer = await send(
            r.port, b"GET / HTTP/1.1\r\nHost: hello.test\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 200")
        await eventually(lambda: raw.received.endswith(b"\r\n\r\n"))
        assert b"content-length" not in raw.received.lower()


class TestUnderscoreHeaders:
    async def test_a_transfer_underscore_encoding_header_is_dropped(
        self, recorded: tuple[RunningRouter, RawApp]
    ) -> None:
        """Attack: Transfer_Encoding next to Content-Length; an app (CGI, WSGI) that maps
        _ to - would see both framings. The app gets only the length."""
        r, raw = recorded
        answer = await send(
            r.port, HEAD + b"Transfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"
        )
        assert answer.startswith(b"HTTP/1.1 200")
        await eventually(lambda: raw.received.endswith(b"abc"))
        head = head_of(bytes(raw.received)).lower()
        assert b"transfer_encoding" not in head
        assert b"transfer-encoding" not in head
        assert b"\r\ncontent-length: 3" in head

    async def test_every_underscore_name_is_dropped_and_the_rest_kept(
        self, recorded: tuple[RunningRouter, RawApp]
    ) -> None:
        r, raw = recorded
        answer = await send(
            r.port,
            b"GET / HTTP/1.1\r\nHost: hello.test\r\nX_Forwarded_For: 6.6.6.6\r\n"
            b"X-Kept: yes\r\nConnection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200")
        await eventually(lambda: raw.received.endswith(b"\r\n\r\n"))
        head = head_of(bytes(raw.received))
        assert b"_" not in head.partition(b"\r\n")[2]
        assert b"6.6.6.6" not in head
        assert b"\r\nX-Kept: yes" in head

    async def test_the_setting_keeps_them(self) -> None:
        r, raw = await _routed("record", underscores=True)
        try:
            answer = await send(
                r.port,
                b"GET / HTTP/1.1\r\nHost: hello.test\r\nX_Legacy_Token: t1\r\n"
                b"Connection: close\r\n\r\n",
            )
            assert answer.startswith(b"HTTP/1.1 200")
            await eventually(lambda: raw.received.endswith(b"\r\n\r\n"))
            assert b"\r\nX_Legacy_Token: t1\r\n" in bytes(raw.received)
        finally:
            await r.router.stop(grace=0.5)
            await raw.stop()


class TestBodyMalformedAfterTheHead:
    async def test_the_400_says_the_app_got_the_head(self) -> None:
        """A chunked body that breaks after its head went upstream: the page must not
        claim the request was not forwarded, and the app's connection is cut."""
        r, raw = await _routed("silent")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
            writer.write(
                b"POST /up HTTP/1.1\r\nHost: hello.test\r\nAccept: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
            )
            await writer.drain()
            await eventually(lambda: b"abc" in raw.received)
            writer.write(b"zz\r\nnot a chunk\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 400")
            assert b"not forwarded" not in answer
            assert b"the app got the head" in answer
            assert head_of(bytes(raw.received)).startswith(b"POST /up HTTP/1.1")
            assert b"not a chunk" not in raw.received
        finally:
            await r.router.stop(grace=0.5)
            await raw.stop()

    async def test_a_request_never_sent_on_still_says_so(
        self, recorded: tuple[RunningRouter, RawApp]
    ) -> None:
        r, raw = recorded
        answer = await send(r.port, HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
        assert answer.startswith(b"HTTP/1.1 400")
        assert b"it was not forwarded" in answer
        assert raw.received == b""


class TestTheSetting:
    @pytest.mark.parametrize(
        ("args", "env", "kept"),
        [
            ([], {}, False),
            (["--underscores-in-headers"], {}, True),
            ([], {"SLIPWAY_ROUTER_UNDERSCORES_IN_HEADERS": "true"}, True),
        ],
    )
    def test_the_flag_and_the_variable_reach_the_router_settings(
        self, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], kept: bool
    ) -> None:
        seen: list[RouterSettings] = []

        def run(main: functools.partial[object]) -> int:
            seen.append(main.args[0])
            return 0

        monkeypatch.setattr(cli, "run", run)
        monkeypatch.setattr(cli.logfmt, "configure", lambda level: None)  # the test's logging
        result = CliRunner().invoke(cli.serve, args, env=env)
        assert result.exit_code == 0, result.output
        (settings,) = seen
        assert settings.underscores_in_headers is kept
