"""GitHub webhook deliveries: signature, de-duplication, and the events review apps act on.

GitHub signs each delivery with HMAC-SHA256 of the raw body under the
webhook's secret (``X-Hub-Signature-256: sha256=<hex>``) and names it with a
GUID (``X-GitHub-Delivery``) that stays the same when a delivery is retried,
so a retry is recognised and applied once (``records.ReviewRecords.claim``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from control.review.errors import PayloadError, SignatureError

_PREFIX = "sha256="


def verify_signature(secret: bytes, body: bytes, header: str | None) -> None:
    """Raise SignatureError unless ``header`` is the HMAC-SHA256 of ``body`` under ``secret``."""
    if not header:
        raise SignatureError("missing X-Hub-Signature-256 header")
    if not header.startswith(_PREFIX):
        raise SignatureError("X-Hub-Signature-256 must start with 'sha256='")
    expected = _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()
    # Constant time: a byte-by-byte compare would leak how much of a forgery is right.
    if not hmac.compare_digest(expected.encode(), header.encode()):
        raise SignatureError("X-Hub-Signature-256 does not match the payload")


def sign(secret: bytes, body: bytes) -> str:
    """The header value GitHub would send for ``body`` (for tests and for replaying)."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


class PullRequestAction(enum.StrEnum):
    OPENED = "opened"
    REOPENED = "reopened"
    SYNCHRONIZE = "synchronize"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Repository:
    full_name: str
    clone_url: str
    default_branch: str


@dataclass(frozen=True, slots=True)
class PullRequestEvent:
    action: PullRequestAction
    number: int
    head_sha: str
    head_ref: str
    base_ref: str
    merged: bool
    repository: Repository


@dataclass(frozen=True, slots=True)
class PushEvent:
    branch: str
    after: str
    repository: Repository

    @property
    def to_default_branch(self) -> bool:
        return self.branch == self.repository.default_branch


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str


Event = PullRequestEvent | PushEvent


def parse_event(name: str, payload: Any, *, branch: str | None = None) -> Event | Ignored:
    """The typed event in a delivery, or why it is none of our business."""
    if not isinstance(payload, dict):
        raise PayloadError("payload is not a JSON object")
    if name == "pull_request":
        return _pull_request(payload)
    if name == "push":
        return _push(payload, branch)
    return Ignored(f"event {name!r} is not one review apps act on")


def _pull_request(payload: dict[str, Any]) -> PullRequestEvent | Ignored:
    action = _field(payload, "action", str)
    try:
        known = PullRequestAction(action)
    except ValueError:
        return Ignored(f"pull_request action {action!r} changes nothing a review app runs")
    pr = _field(payload, "pull_request", dict)
    head = _field(pr, "head", dict, "pull_request.")
    base = _field(pr, "base", dict, "pull_request.")
    return PullRequestEvent(
        action=known,
        number=_field(payload, "number", int),
        head_sha=_field(head, "sha", str, "pull_request.head."),
        head_ref=_field(head, "ref", str, "pull_request.head."),
        base_ref=_field(base, "ref", str, "pull_request.base."),
        merged=bool(pr.get("merged") or False),
        repository=_repository(payload),
    )


def _push(payload: dict[str, Any], branch: str | None) -> PushEvent | Ignored:
    """``branch``: the one whose pushes count (a connected repository's); None: the default."""
    ref = _field(payload, "ref", str)
    if not ref.startswith("refs/heads/"):
        return Ignored(f"push to {ref!r} is not a branch")
    if payload.get("deleted"):
        return Ignored(f"push deleted {ref!r}")
    event = PushEvent(
        branch=ref.removeprefix("refs/heads/"),
        after=_field(payload, "after", str),
        repository=_repository(payload),
    )
    if branch is not None and event.branch != branch:
        return Ignored(f"push to {event.branch!r}, not the pipeline's branch {branch!r}")
    if branch is None and not event.to_default_branch:
        return Ignored(f"push to {event.branch!r}, not the default branch")
    return event


def _repository(payload: dict[str, Any]) -> Repository:
    repo = _field(payload, "repository", dict)
    return Repository(
        full_name=_field(repo, "full_name", str, "repository."),
        clone_url=_field(repo, "clone_url", str, "repository."),
        default_branch=_field(repo, "default_branch", str, "repository."),
    )


def _field(obj: dict[str, Any], key: str, kind: type[Any], where: str = "") -> Any:
    value = obj.get(key)
    # bool is an int to isinstance; a PR number of true is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PayloadError(f"{where}{key} must be a {kind.__name__}, got {value!r}"[:200])
    return value
