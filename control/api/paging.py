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

_RANGE = re.compile(
    r"^\s*(?P<field>[a-z_]+)\s*(?:\](?P<start>[^.;]*))?\.\.\s*(?:;\s*max=(?P<max>\d+)\s*)?$"
)


@dataclass(frozen=True, slots=True)
class Page:
    field: str
    #: Exclusive start, as sent; None from the beginning.
    after: str | None
    limit: int

    def next_range(self, last: str) -> str:
        return f"{self.field} ]{last}..; max={self.limit}"


def parse_range(header: str | None, *, field: str) -> Page:
    if header is None or not header.strip():
        return Page(field=field, after=None, limit=DEFAULT_MAX)
    match = _RANGE.match(header)
    if match is None:
        raise BadRequest(
            f"bad Range header {header!r}: use '{field} ..; max=N' or '{field} ]LAST..; max=N'",
            id="bad_range",
        )
    if match["field"] != field:
        raise BadRequest(
            f"this list is ordered by {field!r}, not {match['field']!r}", id="bad_range"
        )
    limit = int(match["max"]) if match["max"] else DEFAULT_MAX
    if not 1 <= limit <= LIMIT_MAX:
        raise BadRequest(f"max must be from 1 to {LIMIT_MAX}", id="bad_range")
    after = match["start"] if match["start"] else None
    return Page(field=field, after=after, limit=limit)


def int_cursor(page: Page) -> int | None:
    if page.after is None:
        return None
    try:
        return int(page.after)
    except ValueError:
        raise BadRequest(f"the {page.field} cursor must be a number", id="bad_range") from None
