"""Requests held while their app wakes: who may wait, and how many do.

The ``Holder`` is the one owner of the held counts. A client connection asks
it to admit a request before holding it (past the app's ``max_held`` the
answer is no, and the request gets H11) and releases it when the wait ends;
the metrics read the counts and never write them.
"""

from __future__ import annotations


class Holder:
    """Held requests per app, bounded per app by the caller's limit."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        # An app keeps its entry at 0 once its requests went through, so the
        # held-requests gauge shows 0 rather than vanishing.
        self._held: dict[str, int] = {}

    def admit(self, app: str, limit: int) -> bool:
        """Count one more request held for ``app``, unless ``limit`` already are."""
        held = self._held.get(app, 0)
        if held >= limit:
            return False
        self._held[app] = held + 1
        return True

    def release(self, app: str) -> None:
        """One request admitted for ``app`` stopped waiting (served, failed or cut)."""
        self._held[app] -= 1

    def counts(self) -> dict[str, int]:
        """Held requests per app, as a copy (for the metrics)."""
        return dict(self._held)

    def forget(self, app: str) -> None:
        """A deleted app's entry goes (only once none of its requests is held: the
        router checks that none is in flight, and a held request is in flight)."""
        self._held.pop(app, None)
