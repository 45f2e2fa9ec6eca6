"""The archive: a disk spool written before anything is acked, uploaded to S3 in order.

Each app has one open journal (NDJSON, one line per log line) per hour of the
lines' time. A journal is sealed when it reaches ``flush_bytes`` or is older
than ``flush_age``; sealed journals are gzipped and uploaded as
``logs/{app}/{YYYY}/{MM}/{DD}/{HH}/{first_seq}-{last_seq}.ndjson.gz`` and
deleted only once S3 said yes. While S3 fails they stay, oldest first, and the
uploader retries with backoff; at start-up every journal left by the previous
process (open or sealed) is sealed and uploaded. The spool is bounded: past
``max_bytes`` new lines are not archived (and forward chunks are not acked).

Disk writes happen on the event loop: appends are small buffered writes plus
one ``flush()`` per batch (a ``write(2)`` to the page cache). ``fsync`` is
optional because it costs milliseconds per batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring as _string
from pathlib import Path
from typing import IO, Protocol

from logs.errors import ArchiveError
from logs.metrics import LogsMetrics
from logs.model import LogLine, WireLine

log = logging.getLogger(__name__)

_OPEN = ".open"
_READY = ".ready"


_HOURS: dict[int, str] = {}


def hour_of(t: float) -> str:
    """``YYYYMMDDHH`` (UTC) of ``t``; cached per hour, strftime per line was the top cost."""
    index = int(t // 3600)
    hour = _HOURS.get(index)
    if hour is None:
        if len(_HOURS) > 10_000:
            _HOURS.clear()
        hour = _HOURS[index] = dt.datetime.fromtimestamp(index * 3600, dt.UTC).strftime("%Y%m%d%H")
    return hour


def ndjson(app: str, line: LogLine) -> str:
    """One archive line, the same JSON as ``LogLine.to_wire`` (json.dumps per line was slow)."""
    return (
        f'{{"app": "{app}", "seq": {line.seq}, "time": {line.time!r}, '
        f'"source": "{line.source.value}", "process": {_string(line.process)}, '
        f'"text": {_string(line.text)}}}\n'
    )


def object_key(app: str, hour: str, first: int, last: int) -> str:
    return f"logs/{app}/{hour[0:4]}/{hour[4:6]}/{hour[6:8]}/{hour[8:10]}/{first}-{last}.ndjson.gz"


def hour_prefixes(app: str, since: float, until: float) -> list[str]:
    """Key prefixes of every hour in [since, until]; callers bound the span."""
    start = dt.datetime.fromtimestamp(since, dt.UTC).replace(minute=0, second=0, microsecond=0)
    end = dt.datetime.fromtimestamp(until, dt.UTC)
    out = []
    while start <= end:
        out.append(f"logs/{app}/{start:%Y/%m/%d/%H}/")
        start += dt.timedelta(hours=1)
    return out


class ObjectStore(Protocol):
    async def put(self, key: str, body: bytes) -> None: ...
    async def keys(self, prefix: str) -> list[str]: ...
    async def get(self, key: str) -> bytes: ...


@dataclass(slots=True)
class _Journal:
    app: str
    hour: str
    first: int
    last: int
    opened: float
    path: Path
    file: IO[bytes]
    size: int = 0


class Spool:
    """Journals on disk. Synchronous and clock-free: callers pass ``now``."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        flush_bytes: int,
        flush_age: float,
        fsync: bool = False,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.flush_bytes = flush_bytes
        self.flush_age = flush_age
        self.fsync = fsync
        self._open: dict[tuple[str, str], _Journal] = {}
        directory.mkdir(parents=True, exist_ok=True)
        self.bytes = sum(p.stat().st_size for p in directory.glob("*/*") if p.is_file())

    def has_room(self) -> bool:
        return self.bytes < self.max_bytes

    def append(self, app: str, lines: Iterable[LogLine], now: float, *, flush: bool = True) -> int:
        """Write lines to ``app``'s journals (flushed to the OS before returning); bytes written.

        Journals are per hour of the lines' own time, so an archive read by time finds a
        line in the hour it says, even one Fluent Bit delivered late after a retry.
        """
        by_hour: dict[str, list[LogLine]] = {}
        for line in lines:
            by_hour.setdefault(hour_of(line.time), []).append(line)
        written = 0
        for hour, group in by_hour.items():
            written += self._write(app, hour, group, now, flush)
        return written

    def _write(self, app: str, hour: str, lines: list[LogLine], now: float, flush: bool) -> int:
        journal = self._open.get((app, hour))
        if journal is None:
            folder = self.directory / app
            folder.mkdir(exist_ok=True)
            path = folder / f"{hour}-{lines[0].seq:020d}{_OPEN}"
            journal = _Journal(app, hour, lines[0].seq, lines[0].seq, now, path, path.open("ab"))
            self._open[app, hour] = journal
        text = "".join([ndjson(app, line) for line in lines])
        data = text.encode("utf-8", "surrogateescape")
        journal.file.write(data)
        if flush:
            journal.file.flush()
            if self.fsync:
                os.fsync(journal.file.fileno())
        journal.last = lines[-1].seq
        journal.size += len(data)
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        """Push lines appended with ``flush=False`` to the OS (the uploader does it each tick)."""
        for journal in self._open.values():
            journal.file.flush()

    def seal_due(self, now: float) -> None:
        for journal in list(self._open.values()):
            if journal.size >= self.flush_bytes or now - journal.opened >= self.flush_age:
                self._seal(journal)

    def seal_all(self) -> None:
        for journal in list(self._open.values()):
            self._seal(journal)

    def close(self) -> None:
        """Close open journals without sealing them: the next ``recover()`` seals them."""
        for journal in self._open.values():
            journal.file.close()
        self._open.clear()

    def _seal(self, journal: _Journal) -> None:
        journal.file.close()
        journal.path.rename(
            journal.path.with_name(f"{journal.path.stem}-{journal.last:020d}{_READY}")
        )
        del self._open[journal.app, journal.hour]

    def recover(self) -> int:
        """Seal journals a previous process left open; returns how many."""
        count = 0
        for path in sorted(self.directory.glob(f"*/*{_OPEN}")):
            last = _last_seq(path)
            if last is None:
                self.bytes -= path.stat().st_size
                path.unlink()
                continue
            path.rename(path.with_name(f"{path.stem}-{last:020d}{_READY}"))
            count += 1
        return count

    def ready(self) -> list[Path]:
        """Sealed journals, oldest first within each app (name order is hour, then seq)."""
        return sorted(self.directory.glob(f"*/*{_READY}"), key=lambda p: (p.name, p.parent.name))

    def remove(self, path: Path) -> None:
        size = path.stat().st_size
        path.unlink()
        self.bytes -= size


def _last_seq(path: Path) -> int | None:
    last = None
    with path.open("rb") as f:
        for raw in f:
            try:
                last = int(json.loads(raw)["seq"])
            except (ValueError, KeyError, TypeError):
                # A torn last line from a crash mid-write: the lines before it are whole.
                continue
    return last


def read_journal(path: Path) -> tuple[str, int, int, bytes]:
    """(hour, first, last, ndjson) of a sealed journal; torn lines are left out."""
    hour, first, last = path.name[: -len(_READY)].split("-")
    good = []
    with path.open("rb") as f:
        for raw in f:
            if raw.endswith(b"\n"):
                good.append(raw)
    return hour, int(first), int(last), b"".join(good)


class Uploader:
    """Moves sealed journals to the object store, in order, retrying while it fails."""

    def __init__(
        self,
        spool: Spool,
        store: ObjectStore,
        *,
        metrics: LogsMetrics,
        clock: Callable[[], float] = time.time,
        max_backoff: float = 30.0,
    ) -> None:
        self.clock = clock
        self.spool = spool
        self.store = store
        self.metrics = metrics
        self.max_backoff = max_backoff
        self.failing = False

    async def upload_ready(self) -> bool:
        """Upload every sealed journal; False (and stop) at the first failure."""
        for path in self.spool.ready():
            hour, first, last, body = read_journal(path)
            key = object_key(path.parent.name, hour, first, last)
            compressed = await asyncio.to_thread(gzip.compress, body, 6)
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                await self.store.put(key, compressed)
            except ArchiveError as exc:
                self.metrics.upload_failures.inc()
                if not self.failing:
                    log.warning(
                        "archive upload failed; spooling", extra={"key": key, "error": str(exc)}
                    )
                self.failing = True
                return False
            self.metrics.upload_seconds.observe(loop.time() - started)
            self.metrics.archived.inc(body.count(b"\n"))
            if self.failing:
                log.info("archive upload recovered", extra={"key": key})
            self.failing = False
            self.spool.remove(path)
            self.metrics.spool_bytes.set(self.spool.bytes)
        return True

    async def run(self, *, tick: float = 1.0) -> None:
        """Seal what is due and upload, forever; backoff doubles while S3 fails."""
        backoff = tick
        while True:
            self.spool.flush()
            self.spool.seal_due(self.clock())
            self.metrics.spool_bytes.set(self.spool.bytes)
            ok = await self.upload_ready()
            backoff = tick if ok else min(backoff * 2, self.max_backoff)
            await asyncio.sleep(backoff)


def lines_in(body: bytes, since: float, until: float) -> list[WireLine]:
    out: list[WireLine] = []
    for raw in gzip.decompress(body).splitlines():
        try:
            line: WireLine = json.loads(raw)
        except ValueError:
            continue
        if since <= line["time"] <= until:
            out.append(line)
    return out
