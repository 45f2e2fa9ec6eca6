"""Values past a column of the state store are a 422 (or fit), never a store failure.

SQLite keeps a string of any length in a VARCHAR(500); PostgreSQL refuses it,
and a refusal of the store is a 503 that blames the platform. So these run on
both databases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.control.conftest import Api, running_api


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(db_url, tmp_path, provisioners={}) as running:
        assert (await running.call("POST", "/apps", json={"name": "shop"}))[0] == 201
        yield running


async def test_a_description_past_its_column_is_a_422(api: Api, tmp_path: Path) -> None:
    status, body, _ = await api.call(
        "POST",
        "/apps/shop/releases",
        json={"artifact": str(tmp_path), "procfile": {"web": "x"}, "description": "d" * 501},
    )
    assert (status, body["message"]) == (
        422,
        "description must be a string of at most 500 characters",
    )
    assert len((await api.call("GET", "/apps/shop/releases"))[1]) == 1


async def test_an_artifact_past_its_column_is_a_422(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/apps/shop/releases", json={"artifact": "a" * 1001, "procfile": {"web": "x"}}
    )
    assert (status, body["message"]) == (
        422,
        "artifact must be a string of 1-1000 characters (a directory or an image)",
    )


async def test_a_made_description_longer_than_its_column_is_shortened(api: Api) -> None:
    """A config patch of many long names makes "Set A, B, ... config vars": past 500."""
    names = {f"VAR_{i:03}_" + "X" * 40: "v" for i in range(20)}
    status, _, headers = await api.call("PATCH", "/apps/shop/config-vars", json=names)
    assert status == 200
    _, release, _ = await api.call("GET", f"/apps/shop/releases/{headers['Release-Version']}")
    assert len(release["description"]) == 500
    assert release["description"].startswith("Set VAR_000_")
    assert release["description"].endswith("...")


async def test_a_token_name_past_100_characters_is_a_422(api: Api) -> None:
    """The audit log names the actor token:NAME in 200 characters."""
    status, body, _ = await api.call("POST", "/tokens", json={"name": "n" * 101, "app": "shop"})
    assert (status, body["message"]) == (422, "a token needs a name of 1-100 characters")
    status, token, _ = await api.call("POST", "/tokens", json={"name": "n" * 100, "app": "shop"})
    assert status == 201
    status, _, _ = await api.call(
        "PATCH", "/apps/shop/config-vars", json={"K": "v"}, token=token["token"]
    )
    assert status == 200
