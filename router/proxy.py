"""The proxy's shared state (settings, routes, pool, stats, waker), and how the parts fit.

Shape (chosen for speed; see bench/router.py): each client connection (client.py) is an
``asyncio.Protocol`` parsing with llhttp; each request becomes an
``Exchange`` that writes its head and body straight into a pooled upstream
connection and writes the response straight back, re-framing chunked bodies
but never buffering one whole. Flow control runs both ways: a slow reader on
either side pauses reading on the other.

Nothing is forwarded until ``feed_data`` returns for the bytes that held the
request head, so a request whose framing llhttp rejects in the same packet
(CL with TE, differing lengths, bad chunk sizes) never reaches an app; a bad
chunk arriving later aborts the upstream connection mid-body, so an app can
never read a smuggled second request from it. Bodies are re-framed by the
router, so the app and the router always agree on where a request ends.

The hot path (an awake app, a pooled connection) stays synchronous: no task
per request. Connecting, holding a request while its app wakes and retrying
run in a task per exchange.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from router.routes import AppRoute, Endpoint
from router.upstream import Pool, UpstreamConnection

if TYPE_CHECKING:
    from router.accesslog import LogSink
    from router.activity import Activity
    from router.client import ClientConnection
    from router.counters import Counters
    from router.holder import Holder
    from router.routes import Routes
    from router.settings import RouterSettings
    from router.waking import Waker

log = logging.getLogger(__name__)


class Proxy:
    """What every connection shares: settings, routes, pool, stats, holder, sink, waker."""

    def __init__(
        self,
        settings: RouterSettings,
        *,
        routes: Routes,
        stats: Counters,
        activity: Activity,
        holder: Holder,
        sink: LogSink,
        waker: Waker | None,
    ) -> None:
        self.settings = settings
        self.routes = routes
        self.stats = stats
        self.activity = activity
        self.holder = holder
        self.sink = sink
        self.waker = waker
        self.loop = asyncio.get_running_loop()
        self.pool = Pool(max_idle=settings.pool_max_idle, idle_timeout=settings.pool_idle_timeout)
        self.connections: set[ClientConnection] = set()
        self.draining = False
        #: Set whenever the last client connection closes (the drain waits on it).
        self.all_closed = asyncio.Event()
        self._rr: dict[str, int] = {}
        self._wakes: dict[str, asyncio.Task[None]] = {}

    # -- endpoints ---------------------------------------------------------------------------

    def next_index(self, app: str) -> int:
        """Where round robin starts for the app's next request."""
        start = self._rr.get(app, 0)
        self._rr[app] = start + 1
        return start

    def forget(self, app: str) -> None:
        """A deleted app's round-robin position goes (a later app of the name starts at 0)."""
        self._rr.pop(app, None)

    def order(self, route: AppRoute, start: int) -> list[Endpoint]:
        """Endpoints to try from ``start`` (round robin): its own first, connected anew if need
        be, so every endpoint gets its turn; then, past a failure, idle connections first."""
        endpoints = route.endpoints
        n = len(endpoints)
        ordered = [endpoints[(start + i) % n] for i in range(n)]
        rest = ordered[1:]
        warm = [e for e in rest if self.pool.has_idle(e)]
        return [ordered[0], *warm, *(e for e in rest if e not in warm)]

    async def connect(self, endpoint: Endpoint) -> UpstreamConnection:
        async with asyncio.timeout(self.settings.connect_timeout):
            _, conn = await self.loop.create_connection(
                lambda: UpstreamConnection(endpoint, self.pool), endpoint.host, endpoint.port
            )
        return conn

    # -- waking ------------------------------------------------------------------------------

    def wake(self, app: str) -> None:
        """Ask the waker once per app, however many requests are held (single flight)."""
        if app in self._wakes or self.waker is None:
            return
        task = self.loop.create_task(self._wake(app), name=f"wake:{app}")
        self._wakes[app] = task

    async def _wake(self, app: str) -> None:
        assert self.waker is not None
        try:
            await self.waker.wake(app)
        except Exception as exc:
            log.warning("wake failed", extra={"app": app, "error": repr(exc)})
            self.routes.fail(app, f"wake failed: {exc}")
        finally:
            self._wakes.pop(app, None)

    # -- housekeeping ------------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Time out idle clients, slow request heads and upstreams that never answer."""
        settings = self.settings
        for conn in list(self.connections):
            conn.check_timeouts(now, settings)
        self.pool.sweep(now)
