"""Deliveries: signatures, de-duplication, and which events mean something."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from control.review.errors import PayloadError, SignatureError
from control.review.github import (
    Ignored,
    PullRequestAction,
    PullRequestEvent,
    PushEvent,
    parse_event,
    sign,
    verify_signature,
)
from tests.review import payloads

SECRET = b"It's a Secret to Everybody"


def test_githubs_documented_example_signature_verifies() -> None:
    # The worked example in GitHub's "Validating webhook deliveries" guide.
    verify_signature(
        SECRET,
        b"Hello, World!",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = payloads.body(payloads.pull_request("opened"))
    header = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == header
    verify_signature(SECRET, body, header)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing X-Hub-Signature-256"),
        ("", "missing X-Hub-Signature-256"),
        ("sha1=" + "0" * 40, "must start with 'sha256='"),
        ("sha256=" + "0" * 64, "does not match"),
        ("sha256=short", "does not match"),
    ],
)
def test_missing_malformed_and_wrong_signatures_are_refused(
    header: str | None, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify_signature(SECRET, b"{}", header)


def test_a_signature_under_another_secret_or_of_a_changed_body_is_refused() -> None:
    body = payloads.body(payloads.push())
    with pytest.raises(SignatureError):
        verify_signature(SECRET, body, sign(b"another secret", body))
    with pytest.raises(SignatureError):
        verify_signature(SECRET, body + b" ", sign(SECRET, body))


@pytest.mark.parametrize("action", ["opened", "reopened", "synchronize"])
def test_pull_request_actions_that_change_code_become_typed_events(action: str) -> None:
    event = parse_event("pull_request", payloads.pull_request(action, 7))

    assert event == PullRequestEvent(
        action=PullRequestAction(action),
        number=7,
        head_sha=payloads.HEAD_SHA,
        head_ref="new-topic",
        base_ref="main",
        merged=False,
        repository=event.repository,  # type: ignore[union-attr]
    )
    assert isinstance(event, PullRequestEvent)
    assert event.repository.full_name == "octo-org/hello-world"
    assert event.repository.default_branch == "main"


def test_a_closed_pull_request_carries_whether_it_was_merged() -> None:
    merged = parse_event("pull_request", payloads.pull_request("closed", merged=True))
    closed = parse_event("pull_request", payloads.pull_request("closed", merged=False))
    assert isinstance(merged, PullRequestEvent)
    assert isinstance(closed, PullRequestEvent)
    assert (merged.merged, closed.merged) == (True, False)


@pytest.mark.parametrize("action", ["labeled", "edited", "review_requested", "assigned"])
def test_other_pull_request_actions_are_ignored(action: str) -> None:
    assert isinstance(parse_event("pull_request", payloads.pull_request(action)), Ignored)


def test_a_push_to_the_default_branch_is_an_event_and_other_pushes_are_ignored() -> None:
    event = parse_event("push", payloads.push("refs/heads/main"))
    assert isinstance(event, PushEvent)
    assert (event.branch, event.after) == ("main", payloads.HEAD_SHA)

    branch = parse_event("push", payloads.push("refs/heads/feature"))
    tag = parse_event("push", payloads.push("refs/tags/v1.0"))
    deleted = parse_event("push", payloads.push("refs/heads/main", deleted=True))
    assert branch == Ignored("push to 'feature', not the default branch")
    assert tag == Ignored("push to 'refs/tags/v1.0' is not a branch")
    assert deleted == Ignored("push deleted 'refs/heads/main'")


def test_unknown_events_are_ignored_with_the_reason() -> None:
    assert parse_event("ping", payloads.ping()) == Ignored(
        "event 'ping' is not one review apps act on"
    )


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("push", [], "payload is not a JSON object"),
        ("pull_request", {"action": "opened"}, "pull_request must be a dict"),
        ("pull_request", {**payloads.pull_request("opened"), "number": "42"}, "number must be"),
        ("pull_request", {**payloads.pull_request("opened"), "number": True}, "number must be"),
        ("push", {"ref": "refs/heads/main", "after": "x"}, "repository must be a dict"),
    ],
)
def test_payloads_of_the_wrong_shape_are_refused_naming_the_field(
    name: str, payload: object, message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_event(name, payload)


def test_a_missing_head_sha_is_refused_with_its_path() -> None:
    payload = payloads.pull_request("opened")
    del payload["pull_request"]["head"]["sha"]
    with pytest.raises(PayloadError, match=r"pull_request\.head\.sha must be a str"):
        parse_event("pull_request", payload)
