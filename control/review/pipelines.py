"""Repositories connected from the dashboard: the stored pipeline, and checking a branch.

One pipeline per control plane, as with the environment's (SLIPWAY_GITHUB_*,
SLIPWAY_REVIEW_*), which wins where it is set. A stored pipeline becomes the same
``ReviewSettings`` the environment gives (``settings``), so both run through one
path: ``control.server.build_review``, its ``DeliveryRunner`` and ``ControlReviewApps``.
The webhook secret is stored as given: GitHub signs with it, so it must be had in clear.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from control.builds.errors import SourceError
from control.builds.heads import branch_head
from control.builds.sources import classify
from control.errors import BadRequest, Conflict
from control.review.errors import ReviewError
from control.review.plan import Pipeline
from control.settings import ReviewSettings
from control.store.db import Store
from control.store.schema import pipelines

#: Characters of a webhook secret: GitHub takes any, but a short one is guessable.
MIN_SECRET = 16
MAX_SECRET = 200
_BRANCH = re.compile(r"^(?!/|.*(?:\.\.|//|@\{|\.lock$|/$|\.$))[A-Za-z0-9._/-]{1,255}$")
_REPO_NAME = re.compile(r"([A-Za-z0-9._-]+?)(?:\.git)?/*$")


__all__ = ["StoredPipeline", "StoredPipelines", "branch_head", "checked", "new_secret"]


def new_secret() -> str:
    """A webhook secret for the form to offer (160 bits, hex)."""
    return secrets.token_hex(20)


@dataclass(frozen=True, slots=True)
class StoredPipeline:
    name: str
    repo_url: str
    branch: str
    webhook_secret: str
    domain: str
    staging_app: str
    created_by: str = ""
    created_at: float = 0.0

    def settings(self) -> ReviewSettings:
        return ReviewSettings(
            webhook_secret=self.webhook_secret,
            pipeline=self.name,
            domain=self.domain,
            staging_app=self.staging_app,
            branch=self.branch,
        )


def default_name(repo_url: str) -> str:
    """The pipeline name a repository URL suggests: its last path part, lowercased."""
    found = _REPO_NAME.search(repo_url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    name = re.sub(r"[^a-z0-9-]+", "-", found.group(1).lower() if found else "").strip("-")
    return name if name and name[0].isalpha() else f"repo-{name}".rstrip("-")


def checked(
    *, repo_url: str, branch: str, secret: str, name: str, domain: str, created_by: str
) -> StoredPipeline:
    """The form's fields as a pipeline, or BadRequest saying which field is wrong."""
    try:
        classify(repo_url)
    except SourceError as exc:
        raise BadRequest(f"repository URL: {exc}", id="invalid_params") from None
    if not _BRANCH.match(branch):
        raise BadRequest(
            f"branch {branch!r} is not a git branch name (letters, digits, '.', '_', '-', '/')",
            id="invalid_params",
        )
    if not MIN_SECRET <= len(secret) <= MAX_SECRET or not secret.isprintable():
        raise BadRequest(
            f"the webhook secret must be {MIN_SECRET} to {MAX_SECRET} printable characters; "
            "keep the generated one",
            id="invalid_params",
        )
    stored = StoredPipeline(
        name=name or default_name(repo_url),
        repo_url=repo_url,
        branch=branch,
        webhook_secret=secret,
        domain=domain,
        staging_app=f"{name or default_name(repo_url)}-staging",
        created_by=created_by,
        created_at=time.time(),
    )
    try:
        Pipeline(stored.name, stored.domain, stored.staging_app)
    except ReviewError as exc:
        raise BadRequest(str(exc), id="invalid_params") from None
    return stored


class StoredPipelines:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self) -> StoredPipeline | None:
        """The connected repository, if any (one per control plane)."""
        async with self.store.tx(write=False) as tx:
            row = (
                await tx.conn.execute(sa.select(pipelines).order_by(pipelines.c.created_at))
            ).first()
        if row is None:
            return None
        return StoredPipeline(
            name=row.name,
            repo_url=row.repo_url,
            branch=row.branch,
            webhook_secret=row.webhook_secret,
            domain=row.domain,
            staging_app=row.staging_app,
            created_by=row.created_by,
            created_at=row.created_at,
        )

    async def add(self, stored: StoredPipeline) -> None:
        """Store ``stored``; Conflict (409) when a repository is connected already."""
        async with self.store.tx() as tx:
            if (await tx.conn.execute(sa.select(pipelines.c.name))).first() is not None:
                raise Conflict("a repository is connected already", id="conflict")
            await tx.conn.execute(
                pipelines.insert().values(
                    name=stored.name,
                    repo_url=stored.repo_url,
                    branch=stored.branch,
                    webhook_secret=stored.webhook_secret,
                    domain=stored.domain,
                    staging_app=stored.staging_app,
                    created_by=stored.created_by,
                    created_at=stored.created_at,
                )
            )
