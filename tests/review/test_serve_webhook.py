"""``slipway serve control`` mounts the GitHub webhook when review apps are configured.

The same composition as under ``slipway up`` (``control.server.ControlPlane``): a
real ``serve control`` process takes signed deliveries at /github/webhooks and
refuses unsigned ones; review apps without a builder refuse to start, saying why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.control.server import control_server
from tests.review.payloads import pull_request

SECRET = "webhook-secret-for-tests"


def deliver(url: str, body: bytes, signature: str, delivery: str) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url + "/github/webhooks", data=body, method="POST")
    for key, value in {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
    }.items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_control_takes_the_webhook_and_refuses_a_bad_signature(tmp_path: Path) -> None:
    env = {
        "SLIPWAY_BUILD_ROOT": str(tmp_path / "builds"),
        "SLIPWAY_GITHUB_WEBHOOK_SECRET": SECRET,
        "SLIPWAY_REVIEW_DOMAIN": "review.test",
    }
    body = json.dumps(pull_request("closed", 9)).encode()
    with control_server(tmp_path, extra_env=env) as server:
        status, answer = deliver(server.url, body, "sha256=" + "0" * 64, "d-1")
        assert status == 401, answer
        good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        status, answer = deliver(server.url, body, good, "d-2")
        assert status == 202, answer


def test_review_apps_without_a_builder_refuse_to_start_saying_why(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SLIPWAY_DB_URL": f"sqlite+aiosqlite:///{tmp_path}/state.db",
        "SLIPWAY_CONTROL_PORT": "0",
        "SLIPWAY_GITHUB_WEBHOOK_SECRET": SECRET,
        "SLIPWAY_REVIEW_DOMAIN": "review.test",
    }
    env.pop("SLIPWAY_BUILD_ROOT", None)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "slipway"), "serve", "control"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "review apps need a builder: set SLIPWAY_BUILD_ROOT" in result.stderr


@pytest.fixture(autouse=True)
def _no_builder_from_the_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPWAY_BUILDER", raising=False)
