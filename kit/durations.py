"""Human durations for flags and environment variables: ``300``, ``10s``, ``5m``, ``1h``."""

from __future__ import annotations

import re

import click

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; a bare number is seconds. Raises ValueError with the input."""
    match = _PATTERN.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 300, 10s, 5m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def duration_option(_: click.Context, __: click.Parameter, value: str | None) -> float | None:
    """A click callback: ``--idle-after 10s`` -> 10.0, with the accepted forms on error."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
