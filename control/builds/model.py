"""What goes into a build and what comes out, and where its output goes."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol


class Stack(enum.StrEnum):
    PYTHON = "python"
    NODE = "node"
    #: Built by Cloud Native Buildpacks on Kubernetes: the buildpacks chose the language.
    BUILDPACKS = "buildpacks"


@dataclass(frozen=True, slots=True)
class Source:
    """A git URL at a commit, or a tarball already on disk (an upload)."""

    git_url: str | None = None
    commit: str | None = None
    tarball: Path | None = None
    tenant: bool = False
    """Named by a tenant (an app token): its git URL must be https://, ssh:// or
    user@host:path, and git fetches it over those transports only. An admin's or the
    platform's own (slipway up, review apps) may be a path on this machine."""
    config: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """The app's config vars when the build started: Heroku gives them to the build (its
    collectstatic reads SECRET_KEY and DISABLE_COLLECTSTATIC). Never printed."""

    def __post_init__(self) -> None:
        if (self.git_url is None) == (self.tarball is None):
            raise ValueError("a Source is either a git URL with a commit or a tarball path")
        if self.git_url is not None and not self.commit:
            raise ValueError("a git Source needs the commit to build")

    @classmethod
    def git(
        cls, url: str, commit: str, *, tenant: bool = False, config: Mapping[str, str] | None = None
    ) -> Source:
        return cls(git_url=url, commit=commit, tenant=tenant, config=dict(config or {}))

    @classmethod
    def archive(cls, path: Path, *, config: Mapping[str, str] | None = None) -> Source:
        return cls(tarball=path, config=dict(config or {}))


@dataclass(frozen=True, slots=True)
class Artifact:
    """A finished build: a slug directory or an image a release can run, and what it holds."""

    build_id: str
    app: str
    commit: str | None
    slug: Path | None
    """The slug directory: ``app/`` (the source) and, for Python, ``.venv``; None for an image."""
    process_types: MappingProxyType[str, str]
    stack: Stack
    cache_hit: bool
    """Dependencies came from the app's cache untouched (nothing was installed)."""
    digest: str
    """``sha256:`` of the slug's files and of the dependency set it runs with."""
    duration: float = field(default=0.0, compare=False)
    image: str | None = None
    """The app image pinned by digest (``registry/app@sha256:...``) when the build made one."""

    @property
    def reference(self) -> str:
        """What a release runs: the image by digest, else the slug directory."""
        if self.image is not None:
            return self.image
        assert self.slug is not None, "an artifact is a slug or an image"
        return str(self.slug)


class LogSink(Protocol):
    """Where build output goes, line by line; the logs service has the same method."""

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None: ...


class NoSink:
    """Build lines to nowhere: a process with neither a logs service nor a log of its own."""

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        pass
