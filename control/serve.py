"""``slipway serve COMPONENT``: run one component as its own process (as charts/ does)."""

from __future__ import annotations

from control.cli import LazyGroup

#: component -> "module:attribute" of its click command; each package adds its own.
COMPONENTS: dict[str, str] = {
    "router": "router.cli:serve",
    "control": "control.serve_control:serve",
    "agent": "agent.cli:serve",
    "logs": "logs.cli:serve",
}

serve = LazyGroup(
    name="serve", lazy=COMPONENTS, help="Run one slipway component as its own process."
)
