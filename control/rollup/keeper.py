"""The rollup's file in the state dir: read at start, written every minute and at stop.

A JSON file, replaced atomically (write, fsync, rename), so a crash leaves the
last whole copy. At most 2 h of minutes and 7 days of 10-minute buckets per app
(store.py), so it stays small; a copy that cannot be read is set aside as
``.bad`` with a warning, and charts start empty rather than ``slipway up`` failing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from control.rollup.store import Rollup

log = logging.getLogger(__name__)

#: Seconds between saves: a crash loses at most this much of the charts.
SAVE_EVERY = 60.0


def load(path: Path) -> Rollup:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Rollup()
    try:
        return Rollup.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        bad = path.with_suffix(".bad")
        os.replace(path, bad)
        log.warning(
            "request charts file unreadable; starting empty",
            extra={"path": str(path), "moved_to": str(bad), "error": str(exc)},
        )
        return Rollup()


def save(rollup: Rollup, path: Path) -> None:
    _write(path, json.dumps(rollup.to_json(), separators=(",", ":")))


class Keeper:
    """Prunes and saves ``rollup`` to ``path`` every ``every`` seconds; ``run`` is a task."""

    def __init__(
        self,
        rollup: Rollup,
        path: Path,
        *,
        every: float = SAVE_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rollup = rollup
        self.path = path
        self._every = every
        self._clock = clock

    async def flush(self) -> None:
        self.rollup.prune(self._clock())
        # Serialised on the loop (a consistent copy), written off it.
        data = json.dumps(self.rollup.to_json(), separators=(",", ":"))
        await asyncio.to_thread(_write, self.path, data)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.flush()


def _write(path: Path, data: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
