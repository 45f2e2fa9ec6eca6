"""The agent's settings, built once at the entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AgentSettings:
    host: str = "0.0.0.0"
    """Address of the agent's HTTP API (route feed, activity, wake, ops)."""
    port: int = 9081
    """Port of the HTTP API; 0 picks a free one (tests)."""
    tick: float = 0.05
    """Seconds between passes of the idle policy and boot timers; the error of a boot timeout."""
    router_ttl: float = 10.0
    """Seconds after its last report a router stops counting (it died or was scaled away)."""
    drain_timeout: float = 30.0
    """Seconds a sleeping app's processes are kept for routers to drain (Heroku's 30 s)."""
    token: str | None = None
    """Bearer token every ``/v1/`` request must carry (SLIPWAY_AGENT_TOKEN); None: open."""
    feed_timeout: float = 25.0
    """Seconds a route-feed long poll is held open before answering 204 (below proxy idles)."""
    forward_timeout: float = 5.0
    """Seconds a follower replica waits for the leader when forwarding a request to it."""


@dataclass(frozen=True, slots=True)
class LocalSettings:
    """How LocalRuntime runs and watches child processes."""

    host: str = "127.0.0.1"
    """Address routers use to reach the children (they listen on $PORT)."""
    probe_interval: float = 0.005
    """Seconds between readiness probes while booting: a loopback connect costs ~50 µs, and
    the probe interval is most of the router's wake overhead (Knative probes every 200 ms)."""
    probe_timeout: float = 1.0
    """Seconds one HTTP health probe may take."""
    stop_grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when stopping (Heroku gives 30 s)."""
    backoff_initial: float = 1.0
    """Seconds before the second restart in a crash loop (the first is at once); doubles per
    crash in a row."""
    backoff_max: float = 30.0
    """The longest wait between restarts in a crash loop."""
    backoff_reset: float = 10.0
    """Seconds a process must stay up for its next crash to restart quickly again."""
