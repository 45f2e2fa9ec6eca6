"""What ``Control`` is asked to do, as typed values: parsed once, at the edge.

The HTTP API (``control/api/parse.py``) builds these from a decoded JSON body
with the rules of ``control/rules.py``; review apps build them from a checked
app.json. ``Control`` takes them as they are and checks only what needs the
state (an app's add-ons, the token's ceiling, the platform's domains).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Deploy:
    """A release running ``artifact`` with ``procfile`` (POST /apps/{app}/releases)."""

    #: A directory on the control plane's machine, or an image: 1-MAX_ARTIFACT characters.
    artifact: str
    #: Process type -> command, ``release`` included; never empty.
    procfile: Mapping[str, str]
    #: None: "Deploy ARTIFACT".
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Rollback:
    """A release from an old one's artifact, Procfile and config (``{"release": N}``)."""

    version: int


@dataclass(frozen=True, slots=True)
class FormationChange:
    """One process type's new values; None keeps the current one."""

    type: str
    quantity: int | None = None
    idle_after: float | None = None
    min_scale: int | None = None
    max_scale: int | None = None
    never_sleep: bool | None = None
    size: str | None = None
    #: Autoscaling's settings (``agent.autoscale.Autoscale``'s fields, all of them); an empty
    #: mapping turns it off.
    autoscale: Mapping[str, float] | None = None
    #: Its queue (``agent.queues.QueueSource.wire()``); an empty mapping removes it.
    queue: Mapping[str, Any] | None = None

    def given(self) -> dict[str, Any]:
        """The fields it sets, as the audit log records them."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if value is not None}


@dataclass(frozen=True, slots=True)
class AddonCreate:
    """An add-on on ``plan`` attached as ``attachment`` (None: the service's default)."""

    #: ``postgres`` (its first plan) or ``postgres:mini``; never empty.
    plan: str
    attachment: str | None = None


@dataclass(frozen=True, slots=True)
class TokenCreate:
    """An admin token (``app`` None) or a token for one app."""

    name: str
    app: str | None = None

    @property
    def admin(self) -> bool:
        return self.app is None
