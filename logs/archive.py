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
from logs.model import LogLine, Source, WireLine

log = logging.getLogger(__name__)

_OPEN = ".open"
_READY = ".ready"
#: Journals open at once (each an open file): past this the oldest opened is sealed, so
#: a thousand review apps logging once do not hold a thousand file descriptors.
DEFAULT_MAX_OPEN = 256
#: With no object store, sealed journals are deleted oldest first past this share of
#: ``max_bytes``: the room left keeps forward chunks acked while the next ones seal.
PRUNE_TO = 0.8


_HOURS: dict[int, str] = {}
_SOURCES = {source.value: source for source in Source}


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
        max_open: int = DEFAULT_MAX_OPEN,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.flush_bytes = flush_bytes
        self.flush_age = flush_age
        self.fsync = fsync
        self.max_open = max_open
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
            if len(self._open) >= self.max_open:
                self._seal(next(iter(self._open.values())))
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

    def recent(self, lines: int, *, apps: int) -> dict[str, list[LogLine]]:
        """The last ``lines`` kept lines of each app, oldest first, from sealed journals.

        What a restart puts back into the rings: everything acked is in a journal until
        S3 took it. Call after ``recover()``. Only the tails of the newest journals are
        read, and only the ``apps`` apps written most recently.
        """
        found: dict[str, list[LogLine]] = {}
        newest: dict[str, int] = {}
        journals: dict[str, list[tuple[int, Path]]] = {}
        for path in self.ready():
            try:
                last = int(path.name[: -len(_READY)].rsplit("-", 1)[1])
            except (ValueError, IndexError):
                continue  # not a journal of ours
            journals.setdefault(path.parent.name, []).append((last, path))
            newest[path.parent.name] = max(newest.get(path.parent.name, 0), last)
        for app in sorted(newest, key=newest.__getitem__)[-apps:]:
            kept: list[LogLine] = []
            for last, path in sorted(journals[app], reverse=True):
                if len(kept) >= lines and last < kept[-lines].seq:
                    break  # everything older than what is already kept
                kept.extend(_tail(path, lines))
                kept.sort(key=lambda line: line.seq)
            if kept:
                found[app] = kept[-lines:]
        return found

    def prune(self, limit: int) -> int:
        """Delete sealed journals, oldest hour first, until at most ``limit`` bytes remain."""
        removed = 0
        if self.bytes <= limit:
            return removed  # the usual case, every tick: no directory listing
        for path in self.ready():
            if self.bytes <= limit:
                break
            self.remove(path)
            removed += 1
        return removed

    def ready(self) -> list[Path]:
        """Sealed journals, oldest first within each app (name order is hour, then seq)."""
        return sorted(self.directory.glob(f"*/*{_READY}"), key=lambda p: (p.name, p.parent.name))

    def remove(self, path: Path) -> None:
        size = path.stat().st_size
        path.unlink()
        self.bytes -= size


def _last_seq(path: Path) -> int | None:
    """The seq of the last whole line; a torn last line from a crash mid-write is skipped.

    Read from the end: parsing a whole journal per file made a restart cost seconds.
    """
    last = _tail(path, 1)
    return last[0].seq if last else None


def _tail(path: Path, lines: int) -> list[LogLine]:
    """The last ``lines`` whole lines of a journal, read from its end (journals can be big)."""
    block = 64 * 1024
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        data = b""
        start = end
        while start > 0 and data.count(b"\n") <= lines:
            start = max(0, start - block)
            f.seek(start)
            data = f.read(end - start)
    raws = data.split(b"\n")
    if start > 0:
        raws = raws[1:]  # the first piece may be the end of a line that began earlier
    out: list[LogLine] = []
    for raw in raws[-lines - 1 :]:
        try:
            wire = json.loads(raw)
            out.append(
                LogLine(
                    int(wire["seq"]),
                    float(wire["time"]),
                    _SOURCES[wire["source"]],
                    str(wire["process"]),
                    str(wire["text"]),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line from a crash mid-write, or the empty piece after "\n"
    return out[-lines:]


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
    """Moves sealed journals to the object store, in order, retrying while it fails.

    Without a store (``slipway up`` has no S3) it still flushes and seals every tick:
    lines from in-process producers reach the disk within a tick either way.
    """

    def __init__(
        self,
        spool: Spool,
        store: ObjectStore | None,
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
        if self.store is None:
            # The spool is the only copy: keep the newest, so the service never stops acking.
            self.spool.prune(int(self.spool.max_bytes * PRUNE_TO))
            return True
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
