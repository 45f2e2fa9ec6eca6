"""Failed sign-ins, counted per user name and per client address (pure: ``now`` is passed in).

A key may fail ``allowed`` times within ``window`` seconds; the failure that
reaches ``allowed`` and each one after lock it, each time for twice as long as
the time before (``base`` seconds, then 2x, 4x, ... up to ``cap``), so a
guesser gets a handful of tries per hour while a person who mistyped waits
seconds. A success clears the user name's count (not the address's: an
attacker's own account must not reset their budget for guessing others'). Counts live in
the process: with several control replicas each keeps its own, which
multiplies an attacker's budget by the replica count, not more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Failures of one user name in a window before the lockouts start: room for typos.
ALLOWED = 5
#: Failures from one address: several people behind one NAT may each mistype a few times.
ALLOWED_PER_ADDRESS = 20
#: Seconds over which failures are counted; an hour of quiet forgets them.
WINDOW = 3600.0
#: The first lockout; doubling from here reaches the cap after ~10 more failures.
BASE = 2.0
#: The longest lockout: long enough to make guessing pointless, short enough for a person.
CAP = 900.0
#: Keys remembered before the oldest are dropped (a bound on memory under a spray).
MAX_KEYS = 100_000


@dataclass(slots=True)
class _Record:
    failures: int = 0
    first: float = 0.0
    locked_until: float = 0.0


@dataclass(slots=True)
class Throttle:
    allowed: int = ALLOWED
    window: float = WINDOW
    base: float = BASE
    cap: float = CAP
    _records: dict[str, _Record] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds before ``key`` may try again (0: now)."""
        record = self._records.get(key)
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - now)

    def failed(self, key: str, now: float) -> None:
        record = self._records.get(key)
        if record is None or now - record.first > self.window:
            if len(self._records) >= MAX_KEYS:
                self._records.pop(next(iter(self._records)))
            record = self._records[key] = _Record(first=now)
        record.failures += 1
        over = record.failures - self.allowed
        if over >= 0:
            record.locked_until = now + min(self.cap, self.base * 2 ** min(over, 30))

    def succeeded(self, key: str) -> None:
        self._records.pop(key, None)
