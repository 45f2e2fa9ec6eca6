"""Webhook payloads in GitHub's documented shapes, trimmed to a faithful subset.

Field names, nesting and types follow GitHub's webhook reference for the
``pull_request`` and ``push`` events; long URL lists and user objects are cut
to a few representative fields.
"""

from __future__ import annotations

import json
from typing import Any

HEAD_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
BASE_SHA = "9049f1265b7d61be4a8904a9a27120d2064dab3b"


def repository(clone_url: str = "https://github.com/octo-org/hello-world.git") -> dict[str, Any]:
    return {
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": "hello-world",
        "full_name": "octo-org/hello-world",
        "private": False,
        "owner": {"login": "octo-org", "id": 6811672, "type": "Organization"},
        "html_url": "https://github.com/octo-org/hello-world",
        "url": "https://api.github.com/repos/octo-org/hello-world",
        "clone_url": clone_url,
        "git_url": "git://github.com/octo-org/hello-world.git",
        "ssh_url": "git@github.com:octo-org/hello-world.git",
        "default_branch": "main",
        "created_at": "2011-01-26T19:01:12Z",
        "pushed_at": "2026-11-23T08:00:00Z",
    }


def pull_request(
    action: str,
    number: int = 42,
    *,
    head_sha: str = HEAD_SHA,
    merged: bool = False,
    clone_url: str = "https://github.com/octo-org/hello-world.git",
) -> dict[str, Any]:
    repo = repository(clone_url)
    closed = action == "closed"
    payload: dict[str, Any] = {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"https://api.github.com/repos/octo-org/hello-world/pulls/{number}",
            "id": 1934,
            "node_id": "MDExOlB1bGxSZXF1ZXN0MTkzNA==",
            "html_url": f"https://github.com/octo-org/hello-world/pull/{number}",
            "number": number,
            "state": "closed" if closed else "open",
            "locked": False,
            "title": "Amazing new feature",
            "user": {"login": "octocat", "id": 1, "type": "User"},
            "body": "Please pull these awesome changes in!",
            "created_at": "2026-11-20T19:01:12Z",
            "updated_at": "2026-11-23T08:00:00Z",
            "closed_at": "2026-11-23T08:00:00Z" if closed else None,
            "merged_at": "2026-11-23T08:00:00Z" if merged else None,
            "merge_commit_sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6",
            "draft": False,
            "head": {
                "label": "octocat:new-topic",
                "ref": "new-topic",
                "sha": head_sha,
                "user": {"login": "octocat", "id": 1, "type": "User"},
                "repo": repo,
            },
            "base": {
                "label": "octo-org:main",
                "ref": "main",
                "sha": BASE_SHA,
                "user": {"login": "octo-org", "id": 6811672, "type": "Organization"},
                "repo": repo,
            },
            "author_association": "CONTRIBUTOR",
            "merged": merged,
            "mergeable": None,
            "merged_by": {"login": "octocat", "id": 1} if merged else None,
            "comments": 0,
            "commits": 3,
            "additions": 100,
            "deletions": 3,
            "changed_files": 5,
        },
        "repository": repo,
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    }
    if action == "synchronize":
        payload["before"] = BASE_SHA
        payload["after"] = head_sha
    return payload


def push(
    ref: str = "refs/heads/main",
    *,
    after: str = HEAD_SHA,
    deleted: bool = False,
    clone_url: str = "https://github.com/octo-org/hello-world.git",
) -> dict[str, Any]:
    repo = repository(clone_url)
    repo["master_branch"] = "main"
    return {
        "ref": ref,
        "before": BASE_SHA,
        "after": "0" * 40 if deleted else after,
        "created": False,
        "deleted": deleted,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/octo-org/hello-world/compare/{BASE_SHA[:12]}...{after[:12]}",
        "commits": [
            {
                "id": after,
                "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
                "distinct": True,
                "message": "Update README.md",
                "timestamp": "2026-11-23T08:00:00Z",
                "author": {
                    "name": "Octo Cat",
                    "email": "octocat@github.com",
                    "username": "octocat",
                },
                "added": [],
                "removed": [],
                "modified": ["README.md"],
            }
        ],
        "head_commit": None if deleted else {"id": after, "message": "Update README.md"},
        "repository": repo,
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    }


def ping() -> dict[str, Any]:
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": 109948940,
        "hook": {"type": "Repository", "id": 109948940, "events": ["pull_request", "push"]},
        "repository": repository(),
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    }


def body(payload: dict[str, Any]) -> bytes:
    # GitHub sends compact JSON; the signature covers these exact bytes.
    return json.dumps(payload, separators=(",", ":")).encode()
