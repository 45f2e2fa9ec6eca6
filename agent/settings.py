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
    queue_interval: float = 1.0
    """Seconds between readings of each worker type's queue (agent/queue_watch.py)."""
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
    logs_url: str | None = None
    """The logs service's HTTP API (Kubernetes): the platform's lines about apps (R14/R15,
    runtime metrics) are posted there with ``token``; None: only the agent's own log."""
    autoscale_interval: float = 1.0
    """Seconds between samples of routers' in-flight requests for autoscaling (and decisions):
    routers report once a second, and a 6 s panic window wants several samples."""


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
    max_instances: int = 20
    """The most instances one app runs at once, all process types together, whatever its
    formation asks: a guard for the machine (and every other app on it); the control
    plane's own cap on formation is the first line."""
    retire_delay: float = 2.0
    """Seconds an instance removed by a scale-down keeps running out of the route table before
    SIGTERM: routers stop sending it requests, and most in flight finish (Kubernetes users
    give a preStop sleep for the same reason); longer ones get the app's SIGTERM grace."""
    max_spawning: int = 4
    """Processes being started at once, across apps: a crash loop of many instances waits
    its turn instead of forking them all together (each start costs a fork and pipes)."""
