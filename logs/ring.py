"""Per-app ring buffers with sequence numbers, and the subscribers that follow them.

Pure and synchronous: the HTTP shell awaits ``Subscriber.wait()``, everything
else is plain method calls on the event loop's thread, so taking a history
snapshot and registering for live lines happens with no await in between —
no line can fall into the gap or arrive twice.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from logs.model import LogLine, Source

#: Logplex keeps 1500 lines per app; ``heroku logs -n`` tops out there too.
DEFAULT_LINES = 1500
#: Lines a subscriber may have queued before further lines are counted as dropped.
#: 1000 lines is a few hundred KB: bounded, and a burst longer than the history window.
DEFAULT_QUEUE = 1000
#: Rings kept at once. Review apps come and go by the hundred; 1000 full rings of
#: 1500 lines of ~200 bytes is ~300 MB at worst, and idle rings go first.
DEFAULT_APPS = 1000


@dataclass(slots=True)
class Gap:
    """``count`` lines were dropped for this subscriber at this point of its queue."""

    count: int


@dataclass(frozen=True, slots=True)
class Filter:
    source: Source | None = None
    #: ``web`` matches ``web.1`` and ``web.2``; ``web.1`` matches only itself.
    process: str | None = None

    def matches(self, line: LogLine) -> bool:
        if self.source is not None and line.source is not self.source:
            return False
        if self.process is not None:
            p = line.process
            return p == self.process or p.startswith(self.process + ".")
        return True


@dataclass(frozen=True, slots=True)
class Missed:
    """Lines after the client's Last-Event-ID that are no longer in the buffer.

    ``count`` is None when the buffer cannot know (the service restarted since).
    """

    count: int | None


class Subscriber:
    """A bounded queue of lines for one SSE client; overflow becomes a ``Gap``."""

    def __init__(self, flt: Filter, limit: int, on_drop: Callable[[int], None]) -> None:
        self.filter = flt
        self._limit = limit
        self._items: deque[LogLine | Gap] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._on_drop = on_drop

    def push(self, line: LogLine) -> None:
        if not self.filter.matches(line):
            return
        if self._queued >= self._limit:
            last = self._items[-1] if self._items else None
            if isinstance(last, Gap):
                last.count += 1
            else:
                self._items.append(Gap(1))
            self._on_drop(1)
        else:
            self._items.append(line)
            self._queued += 1
        self._wakeup.set()

    def drain(self) -> list[LogLine | Gap]:
        items = list(self._items)
        self._items.clear()
        self._queued = 0
        self._wakeup.clear()
        return items

    async def wait(self, timeout: float) -> list[LogLine | Gap]:
        """Whatever is queued, waiting up to ``timeout`` for something (empty on timeout)."""
        if not self._items:
            # asyncio.timeout, not wait_for: on 3.11 wait_for makes a task per call, and
            # this runs once per subscriber per batch of lines.
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                return []
        return self.drain()


@dataclass(slots=True)
class Ring:
    """One app's recent lines; ``base`` is the first sequence number this process gives.

    ``floor`` is the oldest id this ring can account for (``base``, or the first line
    restored from the spool); ``holes`` are open intervals ``(lo, hi)`` of ids that
    no kept line has: where an earlier process stopped (its unflushed tail, if it
    crashed) and the next one started numbering. Both keep ``Missed`` honest.
    """

    base: int
    size: int
    next_seq: int = 0
    floor: int = 0
    holes: list[tuple[int, int]] = field(default_factory=list)
    lines: deque[LogLine] = field(default_factory=deque)
    subscribers: set[Subscriber] = field(default_factory=set)
    #: The hub's write counter at this ring's last line: the least recent is evicted first.
    touched: int = 0

    def __post_init__(self) -> None:
        self.next_seq = self.base
        self.floor = self.base
        self.lines = deque(maxlen=self.size)

    def restore(self, lines: list[LogLine]) -> None:
        """Lines an earlier process kept, oldest first, before this process adds any."""
        if not lines or self.lines:
            return
        self.floor = lines[0].seq
        previous = lines[0].seq - 1
        for line in lines:
            if line.seq > previous + 1:
                self.holes.append((previous, line.seq))
            previous = line.seq
        self.lines.extend(lines[-self.size :])
        if previous + 1 < self.base:
            self.holes.append((previous, self.base))
        self.next_seq = max(self.base, previous + 1)

    def missed(self, after: int) -> Missed | None:
        """What a client whose last id is ``after`` lost before the oldest line kept."""
        if after < self.floor - 1 or any(lo < after < hi for lo, hi in self.holes):
            # From before anything this ring knows, or an id only a crashed process gave.
            return Missed(None)
        oldest = self.lines[0].seq if self.lines else self.next_seq
        if after + 1 >= oldest:
            return None
        count = oldest - after - 1
        for lo, hi in self.holes:
            overlap = min(hi, oldest) - max(lo, after) - 1
            if overlap > 0:
                count -= overlap
        return Missed(count) if count > 0 else None


class Hub:
    """Every app's ring. ``seq_base`` makes numbers grow across restarts (see docs/logs.md).

    At most ``apps`` rings are kept: past that, the ring written least recently that
    nobody follows is dropped, so memory stays bounded however many apps come and go.
    A dropped app that logs again starts a new ring numbered above every dropped one,
    so its ids still only grow and an old Last-Event-ID reads as "some may be missing".
    """

    def __init__(
        self,
        *,
        seq_base: int = 1,
        lines: int = DEFAULT_LINES,
        queue: int = DEFAULT_QUEUE,
        apps: int = DEFAULT_APPS,
        on_drop: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._rings: dict[str, Ring] = {}
        self._seq_base = seq_base
        self._lines = lines
        self._queue = queue
        self._apps = apps
        self._on_drop = on_drop
        self._writes = 0

    def _ring(self, app: str) -> Ring:
        ring = self._rings.get(app)
        if ring is None:
            if len(self._rings) >= self._apps:
                self._evict()
            ring = self._rings[app] = Ring(base=self._seq_base, size=self._lines)
        return ring

    def _evict(self) -> None:
        idle = [(r.touched, app) for app, r in self._rings.items() if not r.subscribers]
        if not idle:
            return  # every ring has a follower: bounded by the subscribers themselves
        _, app = min(idle)
        ring = self._rings.pop(app)
        # Whatever ring this app gets later numbers above every id this one gave.
        self._seq_base = max(self._seq_base, ring.next_seq)

    def ring_count(self) -> int:
        return len(self._rings)

    def restore(self, app: str, lines: list[LogLine]) -> None:
        """Put ``lines`` (from the spool, oldest first) back before this process adds any."""
        self._ring(app).restore(lines)

    def append(self, app: str, time: float, source: Source, process: str, text: str) -> LogLine:
        ring = self._ring(app)
        line = LogLine(ring.next_seq, time, source, process, text)
        ring.next_seq += 1
        ring.lines.append(line)
        self._writes += 1
        ring.touched = self._writes
        for sub in ring.subscribers:
            sub.push(line)
        return line

    def append_many(
        self, app: str, entries: Iterable[tuple[float, Source, str, str]]
    ) -> list[LogLine]:
        return [self.append(app, t, s, p, x) for t, s, p, x in entries]

    def history(
        self, app: str, flt: Filter, *, lines: int, after: int | None = None
    ) -> tuple[list[LogLine], Missed | None]:
        """The last ``lines`` matching lines, or with ``after`` every one newer than it."""
        ring = self._rings.get(app)
        if ring is None:
            # Never seen or dropped: asking must not make a ring (readers are not writers).
            stale = after is not None and after < self._seq_base - 1
            return [], Missed(None) if stale else None
        if after is None:
            matching = [line for line in ring.lines if flt.matches(line)]
            return (matching[-lines:] if lines > 0 else []), None
        return [line for line in ring.lines if line.seq > after and flt.matches(line)], ring.missed(
            after
        )

    def subscribe(self, app: str, flt: Filter) -> Subscriber:
        sub = Subscriber(flt, self._queue, self._on_drop)
        self._ring(app).subscribers.add(sub)
        return sub

    def unsubscribe(self, app: str, sub: Subscriber) -> None:
        ring = self._rings.get(app)
        if ring is not None:
            ring.subscribers.discard(sub)

    def subscriber_count(self) -> int:
        return sum(len(r.subscribers) for r in self._rings.values())
