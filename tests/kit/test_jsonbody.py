"""The one JSON body reader: what it refuses, what it keeps, and how it reads a real request."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kit import jsonbody
from kit.jsonbody import BadBody, decode, depth
from tests.conftest import free_port


def refused(raw: bytes, **limits: int) -> BadBody:
    with pytest.raises(BadBody) as caught:
        decode(raw, **limits)
    return caught.value


class TestNesting:
    def test_a_body_nested_100000_deep_is_refused_without_recursing(self) -> None:
        started = time.perf_counter()
        error = refused(b"[" * 100_000 + b"]" * 100_000)
        assert (error.status, str(error)) == (
            400,
            "the body nests objects and arrays deeper than 32 levels",
        )
        assert time.perf_counter() - started < 1.0

    def test_an_unterminated_deep_body_is_refused_as_too_deep(self) -> None:
        assert "deeper than 32" in str(refused(b'{"a":' * 50_000))

    def test_brackets_inside_strings_do_not_count(self) -> None:
        text = '{"a": "' + "[" * 100 + '\\"]]"}'
        assert depth(text) == 1
        assert decode(text.encode()) == {"a": "[" * 100 + '"]]'}

    def test_nesting_up_to_the_limit_is_read(self) -> None:
        expected: list[Any] = []
        for _ in range(31):
            expected = [expected]
        assert decode(b"[" * 32 + b"]" * 32) == expected
        assert depth("[" * 32 + "]" * 32) == 32


class TestEncoding:
    def test_invalid_utf8_is_refused_with_its_offset(self) -> None:
        error = refused(b'{"name": "\xff"}')
        assert str(error) == "the body is not UTF-8 (invalid byte at offset 10)"

    def test_a_lone_surrogate_is_refused(self) -> None:
        assert "lone UTF-16 surrogate" in str(refused(b'{"K": "\\ud800"}'))

    def test_a_lone_surrogate_in_upper_case_hex_is_refused(self) -> None:
        assert "lone UTF-16 surrogate" in str(refused(b'["ok", {"k": ["\\uDBFF"]}]'))

    def test_the_text_backslash_ud800_is_kept(self) -> None:
        assert decode(b'"\\\\ud800"') == "\\ud800"

    def test_a_nul_deep_inside_is_refused(self) -> None:
        assert "NUL" in str(refused(b'[1, {"a": [{"\\u0000": 2}]}]'))

    def test_a_lone_surrogate_in_a_key_is_refused(self) -> None:
        assert "lone UTF-16 surrogate" in str(refused(b'{"\\udfff": "v"}'))

    def test_a_surrogate_pair_is_one_character(self) -> None:
        assert decode(b'"\\ud83d\\ude00"') == "\U0001f600"

    def test_a_nul_character_is_refused(self) -> None:
        assert "NUL" in str(refused(b'{"K": "a\\u0000b"}'))

    def test_the_text_backslash_u0000_is_kept(self) -> None:
        assert decode(b'"\\\\u0000"') == "\\u0000"


class TestNumbers:
    @pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
    def test_non_finite_constants_are_refused(self, constant: bytes) -> None:
        error = refused(b'{"idle_after": ' + constant + b"}")
        assert "is not a JSON number: send a finite number" in str(error)

    @pytest.mark.parametrize(
        "number", [b"1e20", b"1e400", b"-1e400", b"9223372036854775808", b"9" * 5000]
    )
    def test_numbers_past_2_53_are_refused(self, number: bytes) -> None:
        assert "out of range (at most 2**53 in magnitude)" in str(refused(number))

    def test_numbers_up_to_2_53_are_read(self) -> None:
        assert decode(b"[9007199254740992, -9007199254740992, 1.5, 0]") == [
            2**53,
            -(2**53),
            1.5,
            0,
        ]


class TestSize:
    def test_a_body_past_the_cap_is_413(self) -> None:
        error = refused(b'"' + b"a" * 20 + b'"', max_bytes=10)
        assert (error.status, str(error)) == (413, "the body is 22 bytes; this endpoint takes 10")

    def test_malformed_json_says_where(self) -> None:
        assert str(refused(b"{nope")).startswith("the body is not valid JSON: Expecting property")


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    """A real server whose one endpoint answers what ``jsonbody.read`` made of the body."""

    async def handle(request: web.Request) -> web.Response:
        try:
            data: Any = await jsonbody.read(request, max_bytes=64)
        except BadBody as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return web.json_response({"data": data})

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


class TestReadingARequest:
    async def test_a_body_is_read_and_decoded(self, echo: str) -> None:
        async with aiohttp.ClientSession() as http, http.post(echo, json={"a": [1]}) as resp:
            assert (resp.status, await resp.json()) == (200, {"data": {"a": [1]}})

    async def test_a_declared_length_past_the_cap_is_413_before_reading(self, echo: str) -> None:
        async with aiohttp.ClientSession() as http, http.post(echo, data=b"1" * 100) as resp:
            assert (resp.status, await resp.json()) == (
                413,
                {"error": "the body is 100 bytes; this endpoint takes 64"},
            )

    async def test_a_chunked_body_past_the_cap_is_413(self, echo: str) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"1" * 10

        async with aiohttp.ClientSession() as http, http.post(echo, data=chunks()) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "the body is 100 bytes; this endpoint takes 64"
