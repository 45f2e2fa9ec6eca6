"""When scheduled backups run, which ones are kept, and when a backup is stale (pure).

Every function takes ``now`` (epoch seconds); none reads a clock.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from control.errors import Unprocessable

#: A day: Heroku's schedules are daily at one hour.
INTERVAL = 86400.0
#: Past this many intervals without a verified success, the add-on's backups are stale.
STALE_FACTOR = 1.5
_AT = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)(?:\s+(\S+))?\s*$")


@dataclass(frozen=True, slots=True)
class At:
    hour: int
    minute: int
    timezone: str

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d} {self.timezone}"


def parse_at(text: str) -> At:
    """``'02:00 Europe/Paris'`` (a bare ``'02:00'`` is UTC)."""
    match = _AT.match(text)
    if match is None:
        raise Unprocessable(
            f"not a schedule time: {text!r} "
            "(use HH:MM and an IANA zone, e.g. '02:00 Europe/Paris')",
            id="invalid_schedule",
        )
    zone = match.group(3) or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise Unprocessable(
            f"unknown time zone {zone!r} (use an IANA name such as Europe/Paris or UTC)",
            id="invalid_schedule",
        ) from None
    return At(int(match.group(1)), int(match.group(2)), zone)


def next_run(at: At, after: float) -> float:
    """The first time strictly after ``after`` the wall clock in ``at``'s zone reads ``at``."""
    zone = ZoneInfo(at.timezone)
    local = dt.datetime.fromtimestamp(after, zone)
    day = local.date()
    for offset in range(3):
        candidate = dt.datetime.combine(
            day + dt.timedelta(days=offset), dt.time(at.hour, at.minute), zone
        ).timestamp()
        if candidate > after:
            return candidate
    raise AssertionError("a daily time recurs within three days")  # pragma: no cover


def due(at: At, *, last_run: float, now: float) -> bool:
    """Whether a run is owed: the scheduled time after the last run has come."""
    return next_run(at, last_run) <= now


@dataclass(frozen=True, slots=True)
class Kept:
    id: str
    finished_at: float


def retained(
    backups: Sequence[Kept], *, daily: int, weekly: int, timezone: str = "UTC"
) -> set[str]:
    """Ids to keep: the newest backup of each of the ``daily`` newest days that have one,
    and of each of the ``weekly`` newest ISO weeks (days and weeks in the schedule's zone)."""
    zone = ZoneInfo(timezone)
    newest_first = sorted(backups, key=lambda b: b.finished_at, reverse=True)
    keep: set[str] = set()
    days: list[dt.date] = []
    weeks: list[tuple[int, int]] = []
    for backup in newest_first:
        local = dt.datetime.fromtimestamp(backup.finished_at, zone)
        day = local.date()
        week = local.isocalendar()[:2]
        if day not in days and len(days) < daily:
            days.append(day)
            keep.add(backup.id)
        if week not in weeks and len(weeks) < weekly:
            weeks.append((week[0], week[1]))
            keep.add(backup.id)
    return keep


def stale(
    *, last_success: float | None, since: float, now: float, interval: float = INTERVAL
) -> bool:
    """No verified success within STALE_FACTOR intervals (counted from the schedule's
    creation, ``since``, when there was never one)."""
    return now - (last_success if last_success is not None else since) > STALE_FACTOR * interval
