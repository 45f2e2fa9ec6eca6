"""What the agent and the routers say to each other, written once.

The agent publishes route tables (``GET /v1/routes``) and takes activity
reports (``POST /v1/activity``); the router reads the one and sends the
other. Both packages import these shapes and the defaults from here, so the
two sides cannot drift apart; neither imports the other.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

# Heroku's R10: a web process must bind $PORT within 60 s of starting.
DEFAULT_BOOT_TIMEOUT = 60.0
# Requests held per app while it wakes; beyond, H11. A burst bigger than this is not a
# human clicking a review app, and each held request pins a client connection.
DEFAULT_MAX_HELD = 100


class EndpointPayload(TypedDict):
    host: str
    port: int
    dyno: NotRequired[str]


class AppRoutePayload(TypedDict):
    """One app of a route table. A static routes file may leave out all but ``hosts``."""

    hosts: list[str]
    endpoints: NotRequired[list[EndpointPayload]]
    state: NotRequired[str]
    boot_timeout: NotRequired[float]
    max_held: NotRequired[int]
    reason: NotRequired[str]
    #: The router answers H80 (a maintenance page) instead of sending requests to the app.
    maintenance: NotRequired[bool]


class RouteTablePayload(TypedDict):
    version: int
    apps: dict[str, AppRoutePayload]


class ActivityReport(TypedDict):
    """One app in a router's report."""

    #: Requests counted since the router started (monotonic; diff two reports for a rate).
    requests: int
    in_flight: int
    #: Seconds since the last request arrived or finished, at report time.
    idle_for: float
    #: ``in_flight`` integrated over time since the router started, in request-seconds
    #: (monotonic; diff two reports for the average in flight between them). Absent from
    #: older routers: the agent then takes ``in_flight`` as it is.
    busy: NotRequired[float]


class ActivityPost(TypedDict):
    """``POST /v1/activity``: what one router saw, and which route table it serves."""

    router: str
    version: int
    apps: dict[str, ActivityReport]
