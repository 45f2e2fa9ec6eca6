"""GET /apps/{app}/review: what a review app's last plan (or a staging deploy) came to, and why."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control.review.records import ReviewRecords, ReviewState
from tests.control.conftest import Api, running_api


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(db_url, tmp_path, provisioners={}) as running:
        for name in ("shop-pr-4", "other"):
            assert (await running.call("POST", "/apps", json={"name": name}))[0] == 201
        yield running


async def test_a_failed_plan_shows_its_state_and_its_masked_reason(api: Api) -> None:
    await ReviewRecords(api.control.store).set_status(
        "shop-pr-4",
        ReviewState.FAILED,
        "cannot fetch https://bot:ghp_s3cr3t@git.example.com/o/r.git at 6dcb09b",
        commit="6dcb09b5b57875f334f61aebed695e2e4193db5e",
        delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        now=time.time(),
    )
    status, body, _ = await api.call("GET", "/apps/shop-pr-4/review")
    assert status == 200
    assert body["app"] == {"name": "shop-pr-4"}
    assert (body["state"], body["commit"]) == ("failed", "6dcb09b5b57875f334f61aebed695e2e4193db5e")
    assert body["reason"].startswith("cannot fetch https://")
    assert "ghp_s3cr3t" not in body["reason"]


async def test_an_app_no_delivery_deployed_is_a_404_that_says_so(api: Api) -> None:
    status, body, _ = await api.call("GET", "/apps/other/review")
    assert (status, body["id"]) == (404, "review_not_found")
    assert "no GitHub delivery" in body["message"]


async def test_another_app_s_token_cannot_read_it(api: Api) -> None:
    """Attack: app B's token reads app A's review status (its reasons name A's repository)."""
    status, token, _ = await api.call("POST", "/tokens", json={"name": "ci", "app": "other"})
    assert status == 201
    status, _, _ = await api.call("GET", "/apps/shop-pr-4/review", token=token["token"])
    assert status == 403
