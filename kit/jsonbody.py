"""The one reader of JSON request bodies: every JSON endpoint of control, agent and logs.

A body is refused, with a message saying what to send instead, when it is
larger than the endpoint takes, not UTF-8, nested deeper than any slipway
payload, not JSON, or holds what JSON allows but no slipway field can keep:
NaN and Infinity (Python's json module reads them; nothing re-reads the JSON
it writes back), numbers past 2**53 (RFC 7493: not exchanged exactly between
implementations; past a column's range or ``int()``'s digit limit they break
later, far from the request), lone UTF-16 surrogates (no UTF-8 encoding: the
store, a log line or an exec'd environment fail on them) and NUL characters
(PostgreSQL text and process environments cannot hold them).

``decode`` is pure and never recurses on the input: depth is counted over the
raw text before ``json.loads`` (which does recurse) sees it. Each package
translates ``BadBody`` into its own error shape at its HTTP boundary.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from aiohttp import web

#: Nesting of objects and arrays at most. slipway's deepest body (an agent definition:
#: processes -> web -> command) is 3 levels; 32 leaves room and is far below the
#: interpreter's recursion limit that ``json.loads`` would otherwise hit.
MAX_DEPTH = 32
#: Bytes at most, unless an endpoint says otherwise: config vars are capped at 32 KiB,
#: agent definitions carry them once; aiohttp's own default is the same 1 MiB.
MAX_BYTES = 1024**2
#: Integers (and integral floats) beyond this are refused: RFC 7493's interoperable range.
MAX_SAFE_INTEGER = 2**53

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
#: Raw UTF-8 cannot carry a surrogate (strict decoding refuses it) nor JSON a raw NUL
#: (json.loads refuses control characters in strings): both arrive only as escapes,
#: so the text is searched first, and the value walked only when one may be there.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_NUL_ESCAPE = "\\u0000"


class BadBody(ValueError):
    """A body refused; ``status`` is 400 (malformed) or 413 (too large)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def depth(text: str) -> int:
    """How deeply objects and arrays nest in ``text`` (brackets inside strings do not count).

    Iterative and C-speed (regular expressions and ``accumulate``), so a
    megabyte of ``[`` costs milliseconds and no stack.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _constant(name: str) -> Any:
    raise BadBody(f"{name} is not a JSON number: send a finite number")


def _int(digits: str) -> int:
    # Checked on the text: int() of a 5,000-digit literal raises, and 2**63 overflows columns.
    if len(digits.lstrip("-")) > 16 or abs(int(digits)) > MAX_SAFE_INTEGER:
        raise BadBody(f"the number {digits[:20]} is out of range (at most 2**53 in magnitude)")
    return int(digits)


def _float(text: str) -> float:
    value = float(text)
    if not abs(value) <= MAX_SAFE_INTEGER:  # also catches inf, from 1e400
        raise BadBody(f"the number {text[:20]} is out of range (at most 2**53 in magnitude)")
    return value


def decode(raw: bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in ``raw``; BadBody says what is wrong with it."""
    if len(raw) > max_bytes:
        raise BadBody(f"the body is {len(raw)} bytes; this endpoint takes {max_bytes}", status=413)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"the body is not UTF-8 (invalid byte at offset {exc.start})") from None
    # Fewer opening brackets than the limit cannot nest past it: most bodies skip the scan.
    if text.count("[") + text.count("{") > max_depth and depth(text) > max_depth:
        raise BadBody(f"the body nests objects and arrays deeper than {max_depth} levels")
    try:
        data = json.loads(text, parse_constant=_constant, parse_int=_int, parse_float=_float)
    except BadBody:
        raise
    except ValueError as exc:
        raise BadBody(f"the body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            # C-speed walk over every string, keys included: a lone surrogate cannot encode.
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadBody("the body holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from None
    if _NUL_ESCAPE in text and _holds_nul(data):
        raise BadBody("the body holds a NUL character (\\u0000), which no field can keep")
    return data


def _holds_nul(data: Any) -> bool:
    """Whether a NUL is in any string of ``data``, keys included (a loop, not recursion)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def read(request: web.Request, *, max_bytes: int = MAX_BYTES) -> Any:
    """The request's JSON body, read at most ``max_bytes`` (413 past it), then ``decode``d."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise BadBody(
            f"the body is {request.content_length} bytes; this endpoint takes {max_bytes}",
            status=413,
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise BadBody(f"the body is too large: {exc.text}", status=413) from None
    return decode(raw, max_bytes=max_bytes)
