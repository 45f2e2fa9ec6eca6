"""Errors of the agent's Kubernetes runtime: the shared tree (kit.kube) and its own.

NotLeader is the agent's: this replica does not hold the Lease, so it must not
scale. The rest comes from kit.kube, where the client's errors are translated.
"""

from __future__ import annotations

from agent.errors import RuntimeFailure
from kit.kube import (
    ApiUnavailable,
    Conflict,
    Gone,
    KubeError,
    NotFound,
    Rejected,
    checked,
    from_status,
    translated,
)

__all__ = [
    "ApiUnavailable",
    "Conflict",
    "Gone",
    "KubeError",
    "NotFound",
    "NotLeader",
    "Rejected",
    "checked",
    "from_status",
    "translated",
]


class NotLeader(KubeError, RuntimeFailure):
    """A RuntimeFailure to the Agent too: a replica that lost the Lease keeps going."""
