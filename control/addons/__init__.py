"""Add-ons carved out of shared servers, one tenant unable to reach another.

``plans.py`` holds the limits (pure data); ``postgres.py`` and ``redis.py``
are the I/O shells that create and destroy a tenant on a shared server. Both
implement ``Provisioner``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Provisioned:
    #: The tenant's name on the server: a role and database, or an ACL user.
    resource: str
    #: What the app gets as NAME_URL (carries the password).
    url: str


class Provisioner(Protocol):
    #: "postgres" or "redis": the first half of a plan name like "postgres:mini".
    service: str

    @property
    def plans(self) -> Mapping[str, object]: ...

    async def create(self, plan: str) -> Provisioned:
        """Create one tenant under ``plan``; raises AddonError, leaving nothing half-made."""

    async def destroy(self, resource: str) -> None:
        """Remove the tenant and everything it owns; idempotent."""

    async def ensure(self, resource: str, *, url: str, plan: str) -> None:
        """Re-assert an existing tenant's access and limits (at start); idempotent.

        Raises AddonError when the tenant cannot be restored (its data is gone).
        """
