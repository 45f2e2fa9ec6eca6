"""The router's errors.

RouterError
├── AgentUnavailable     the agent (route feed, activity reports, wakes) cannot be reached
├── RouteTableError      a route table (file or feed) is malformed or inconsistent
└── UpstreamError        an upstream could not be used; carries the Heroku code
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of every error the router raises on purpose."""


class RouteTableError(RouterError):
    pass


class UpstreamError(RouterError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AgentUnavailable(RouterError):
    """The agent could not be reached, or refused a request (router/feed.py)."""
