"""The agent's errors.

AgentError
├── ConfigError          the apps file or a policy is wrong; the message names the key
├── UnknownApp           an app (or an app's process type) the agent does not run
└── RuntimeFailure       the runtime could not do what it was asked (spawn, scale)
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError, ValueError):
    pass


class UnknownApp(AgentError, KeyError):
    def __init__(self, app: str, process: str | None = None) -> None:
        what = f"{app}/{process}" if process else app
        super().__init__(what)
        self.app = app
        self.process = process

    def __str__(self) -> str:
        if self.process:
            return f"app {self.app!r} has no process type {self.process!r}"
        return f"no app named {self.app!r}"


class RuntimeFailure(AgentError):
    pass
