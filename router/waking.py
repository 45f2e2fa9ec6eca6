"""The seam between the router and whoever can wake an app (the agent).

The router holds a request for an app with no ready endpoint, asks the
``Waker`` once per app (single flight), and waits on ``Routes.wait_for`` for
the route feed to show endpoints (go) or a crashed state (H10); the app's
``boot_timeout`` bounds the wait (H20) and its ``max_held`` the queue (H11).
"""

from __future__ import annotations

from typing import Protocol


class Waker(Protocol):
    async def wake(self, app: str) -> None:
        """Ask for ``app`` to be scaled up; return once asked, not once ready.

        Raise to say the wake cannot happen at all (the held requests get H10).
        """
