"""How the CLI prints: aligned columns, times and durations a person reads at a glance.

Pure functions of the API's JSON and ``now``, so tests give both and read the text.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Sequence


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows padded to aligned columns (two spaces apart), trailing blanks trimmed."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def parse_iso(text: str | None) -> float | None:
    """The API's ``2026-01-02T03:04:05Z`` as epoch seconds; None when absent or malformed."""
    if not text:
        return None
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def short_time(at: float) -> str:
    """``2026-01-02 03:04:05Z``: UTC, the same on every machine."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


def span(seconds: float) -> str:
    """A duration the way the CLI takes them: ``45s``, ``5m``, ``1h30m``, ``2d3h``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def ago(at: float | None, now: float) -> str:
    """``2026-01-02 03:04:05Z (5m ago)``, or ``-`` for no time."""
    if at is None:
        return "-"
    return f"{short_time(at)} ({span(now - at)} ago)"
