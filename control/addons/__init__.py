"""Add-ons carved out of shared servers, one tenant unable to reach another.

``plans.py`` holds the limits (pure data); ``postgres.py`` and ``redis.py``
are the I/O shells that create and destroy a tenant on a shared server. Both
implement ``Provisioner``; those that can move a tenant to another plan in place
(its data kept) implement ``ResizableProvisioner`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Provisioned:
    #: The tenant's name on the server: a role and database, or an ACL user.
    resource: str
    #: What the app gets as NAME_URL (carries the password).
    url: str
    #: What the creation says to whoever asked for it (Heroku's provision_message), if anything.
    message: str = ""


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


@runtime_checkable
class OwnedProvisioner(Protocol):
    """A provisioner whose tenants are fenced to the app that owns them (Kubernetes'
    dedicated add-ons: their NetworkPolicy admits that app's pods only)."""

    async def create_for(self, app: str, plan: str) -> Provisioned:
        """Create one tenant under ``plan`` for ``app``; as ``Provisioner.create``."""


@runtime_checkable
class ResizableProvisioner(Protocol):
    """A provisioner that moves a tenant to another plan in place, its data kept
    (Heroku's ``addons:upgrade``)."""

    async def resize(self, resource: str, *, app: str, url: str, plan: str, to: str) -> Provisioned:
        """Move the tenant of ``app`` from ``plan`` to ``to``: the URL the app has afterwards
        (``url`` unless the move changed it), and what to tell whoever asked, if anything
        (a dedicated Redis restarted because its new caps could not be set live).

        Raises Unprocessable when this move cannot be made in place (the message says
        what to do instead), AddonError when the server refused or failed.
        """
