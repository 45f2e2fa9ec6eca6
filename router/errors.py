"""The router's errors: the one tree of exceptions it raises on purpose.

RouterError
├── AgentUnavailable     the agent (route feed, activity reports, wakes) cannot be reached
└── RouteTableError      a route table (file or feed) is malformed or inconsistent

What a client gets when the router answers for an app (H10, H11, a 400, ...)
is not an exception but an ``ErrorPage`` (router/pages.py).
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of every error the router raises on purpose."""


class RouteTableError(RouterError):
    """A route table (file or feed) is malformed or inconsistent; the message says where."""


class AgentUnavailable(RouterError):
    """The agent could not be reached, or refused a request (router/feed.py)."""
