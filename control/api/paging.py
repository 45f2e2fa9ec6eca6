"""Heroku-style Range pagination: ``Range: name ]shop..; max=50`` (pure).

The client asks for a sort field, an optional exclusive start (``]value``)
and a page size; a full page answers 206 with ``Next-Range`` naming where to
continue, the last page answers 200. The value is a cursor, so pages stay
stable while rows are added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from control.errors import BadRequest

#: Page size without a ``max``: Heroku's default.
DEFAULT_MAX = 200
#: Largest page a client may ask for: Heroku's ceiling.
LIMIT_MAX = 1000

#: What a cursor may hold per sort field: names are app names, the rest are numbers.
_CURSOR = {"name": "[a-z0-9-]*"}
#: 18 digits: every cursor fits a 64-bit integer column on both databases.
_NUMBER = "[0-9]{0,18}"


def range_pattern(field: str, *, documented: bool = False) -> str:
    """The Range header's grammar for one list, as a regex: cursor in group 2, max in group 4.

    The server parses any number after ``max=`` so it can say what is wrong
    with it; the OpenAPI document shows the accepted range (1-1000) instead.
    """
    cursor = _CURSOR.get(field, _NUMBER)
    limit = "0*(1000|[1-9][0-9]{0,2})" if documented else "([0-9]+)"
    return f"^{field} (\\]({cursor}))?\\.\\.(; max={limit})?$"


@dataclass(frozen=True, slots=True)
class Page:
    field: str
    #: Exclusive start, as sent; None from the beginning.
    after: str | None
    limit: int

    def next_range(self, last: str) -> str:
        return f"{self.field} ]{last}..; max={self.limit}"


def parse_range(header: str | None, *, field: str) -> Page:
    if header is None:
        return Page(field=field, after=None, limit=DEFAULT_MAX)
    match = re.fullmatch(range_pattern(field), header)
    if match is None:
        raise BadRequest(
            f"bad Range header {header!r}: this list is ordered by {field!r}; use "
            f"'{field} ..; max=N' or '{field} ]LAST..; max=N'",
            id="bad_range",
        )
    # Digits counted first: int() of thousands of digits raises instead of answering.
    digits = (match[4] or str(DEFAULT_MAX)).lstrip("0") or "0"
    limit = int(digits) if len(digits) <= 4 else LIMIT_MAX + 1
    if not 1 <= limit <= LIMIT_MAX:
        raise BadRequest(f"max must be from 1 to {LIMIT_MAX}", id="bad_range")
    return Page(field=field, after=match[2] or None, limit=limit)


def int_cursor(page: Page) -> int | None:
    """The cursor of a numbered list (the Range grammar already allowed digits only)."""
    return None if page.after is None else int(page.after)
