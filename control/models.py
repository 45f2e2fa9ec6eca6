"""The control plane's records, as the store returns them (frozen, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ReleaseStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class App:
    id: int
    name: str
    current_release: int | None
    created_at: float
    updated_at: float
    #: The router answers H80 (a maintenance page) instead of sending requests to the app.
    maintenance: bool = False


@dataclass(frozen=True, slots=True)
class Domain:
    app: str
    hostname: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Release:
    app: str
    version: int
    status: ReleaseStatus
    description: str
    artifact: str | None
    procfile: dict[str, str]
    config: dict[str, str]
    addon_env: dict[str, str]
    output: str
    actor: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Formation:
    type: str
    quantity: int
    idle_after: float
    min_scale: int
    max_scale: int
    never_sleep: bool
    updated_at: float
    #: Memory and CPU of each process (agent/dynosize.py): a Heroku size name or "768MB".
    size: str = "standard-1x"
    #: Autoscaling by concurrency (web only): ``agent.autoscale.Autoscale``'s fields; None: off.
    autoscale: dict[str, float] | None = None
    #: Where this worker type's jobs wait (``agent.queues.QueueSource.wire()``), so they wake
    #: it while the app sleeps; None: only what its Procfile line shows (``detect``).
    queue: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Addon:
    id: str
    app: str
    name: str
    service: str
    plan: str
    attachment: str
    url: str
    resource: str
    created_at: float
    #: What its creation said (Heroku's provision_message): kept only in that answer.
    provision_message: str = ""

    @property
    def config_var(self) -> str:
        return f"{self.attachment}_URL"


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    name: str
    admin: bool
    #: The app a non-admin token may act on (its name now, resolved at lookup).
    app: str | None
    created_at: float
    #: The dashboard user it speaks for (a session, or `slipway login --user`), if any.
    user: str | None = None
    #: A non-admin user's apps (memberships), read at lookup, so a removal takes effect
    #: within the token cache's TTL.
    apps: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    app: str | None
    detail: dict[str, Any] = field(default_factory=dict)


class BuildStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Build:
    id: str
    app: str
    status: BuildStatus
    #: A git URL (or local repository path), or an uploaded tarball's path.
    source_url: str
    #: The commit asked for; None for a tarball.
    source_version: str | None
    #: The full sha built, once known.
    commit: str | None
    artifact: str | None
    digest: str | None
    procfile: dict[str, str]
    #: The release the build made, and that release's status (None: not released).
    release: int | None
    release_status: ReleaseStatus | None
    #: Why it failed, with the last lines of output.
    output: str
    actor: str
    created_at: float
    finished_at: float | None
    #: The branch ``source_version`` was resolved from, when one was named (None: a sha).
    source_ref: str | None = None
