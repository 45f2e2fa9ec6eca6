"""Apps, tokens and the error shape over HTTP, against a real server on loopback."""

from __future__ import annotations

import pytest

from tests.control.conftest import Api


async def make_token(api: Api, *, app: str | None = None, admin: bool = False) -> str:
    body: dict[str, object] = {"name": "t", "admin": admin}
    if app is not None:
        body["app"] = app
    status, token, _ = await api.call("POST", "/tokens", json=body)
    assert status == 201, token
    secret: str = token["token"]
    return secret


class TestAuthentication:
    async def test_health_and_metrics_are_open(self, api: Api) -> None:
        for path in ("/healthz", "/readyz", "/metrics"):
            async with api.session.get(api.base + path) as response:
                assert response.status == 200

    @pytest.mark.parametrize("path", ["/apps", "/openapi.json", "/auth/verify", "/audit"])
    async def test_everything_else_needs_a_token(self, api: Api, path: str) -> None:
        status, body, _ = await api.call("GET", path, token=None)
        assert status == 401
        assert body["id"] == "unauthorized"
        assert "Authorization: Bearer" in body["message"]

    async def test_an_unknown_token_is_refused(self, api: Api) -> None:
        status, body, _ = await api.call("GET", "/apps", token="slw_nope")
        assert (status, body["id"]) == (401, "unauthorized")

    async def test_a_non_bearer_scheme_is_refused(self, api: Api) -> None:
        status, body, _ = await api.call(
            "GET", "/apps", token=None, headers={"Authorization": "Basic abc"}
        )
        assert (status, body["id"]) == (401, "unauthorized")

    async def test_tokens_are_stored_as_hashes_only(self, api: Api) -> None:
        secret = await make_token(api, admin=True)
        async with api.control.store.engine.connect() as conn:
            rows = (await conn.exec_driver_sql("SELECT hash FROM tokens")).all()
        stored = {row[0] for row in rows}
        assert secret not in stored
        assert all(len(h) == 64 for h in stored)

    async def test_an_app_token_acts_on_its_app_only(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "mine"})
        await api.call("POST", "/apps", json={"name": "theirs"})
        token = await make_token(api, app="mine")
        assert (await api.call("GET", "/apps/mine", token=token))[0] == 200
        status, body, _ = await api.call("GET", "/apps/theirs", token=token)
        assert (status, body["id"]) == (403, "forbidden")
        status, listed, _ = await api.call("GET", "/apps", token=token)
        assert [a["name"] for a in listed] == ["mine"]

    async def test_an_app_token_cannot_create_apps_or_tokens(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "mine"})
        token = await make_token(api, app="mine")
        for path, body in (("/apps", {"name": "new"}), ("/tokens", {"name": "x", "admin": True})):
            status, error, _ = await api.call("POST", path, json=body, token=token)
            assert (status, error["message"]) == (403, "this needs an admin token")

    async def test_an_app_token_for_a_missing_app_does_not_reveal_whether_it_exists(
        self, api: Api
    ) -> None:
        await api.call("POST", "/apps", json={"name": "mine"})
        token = await make_token(api, app="mine")
        status, _, _ = await api.call("GET", "/apps/ghost", token=token)
        assert status == 403

    async def test_an_app_token_follows_its_app_through_a_rename(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "mine"})
        token = await make_token(api, app="mine")
        assert (await api.call("PATCH", "/apps/mine", json={"name": "ours"}, token=token))[0] == 200
        assert (await api.call("GET", "/apps/ours", token=token))[0] == 200

    async def test_deleting_an_app_revokes_its_tokens(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "mine"})
        token = await make_token(api, app="mine")
        await api.call("DELETE", "/apps/mine")
        assert (await api.call("GET", "/apps", token=token))[0] == 401

    async def test_a_revoked_token_stops_working(self, api: Api) -> None:
        status, token, _ = await api.call("POST", "/tokens", json={"name": "ci", "admin": True})
        assert (await api.call("GET", "/apps", token=token["token"]))[0] == 200
        status, _, _ = await api.call("DELETE", f"/tokens/{token['id']}")
        assert status == 200
        assert (await api.call("GET", "/apps", token=token["token"]))[0] == 401
        status, body, _ = await api.call("DELETE", f"/tokens/{token['id']}")
        assert (status, body["id"]) == (404, "token_not_found")

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"name": "x"}, "either admin or for one app"),
            ({"name": "x", "admin": True, "app": "a1"}, "either admin or for one app"),
            ({"name": "", "admin": True}, "needs a name"),
        ],
    )
    async def test_a_token_needs_exactly_one_scope_and_a_name(
        self, api: Api, body: dict[str, object], message: str
    ) -> None:
        await api.call("POST", "/apps", json={"name": "a1"})
        status, error, _ = await api.call("POST", "/tokens", json=body)
        assert status == 422
        assert message in error["message"]

    async def test_a_token_for_a_missing_app_is_refused(self, api: Api) -> None:
        status, error, _ = await api.call("POST", "/tokens", json={"name": "x", "app": "ghost"})
        assert (status, error["id"]) == (404, "app_not_found")


class TestTokenVerification:
    """The contract the logs service relies on: GET /auth/verify?app=NAME."""

    async def test_a_token_for_the_app_is_accepted_and_described(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        token = await make_token(api, app="shop")
        status, body, _ = await api.call("GET", "/auth/verify?app=shop", token=token)
        assert status == 200
        assert body["app"] == "shop"
        assert body["token"]["app"] == {"name": "shop"}
        assert body["token"]["admin"] is False

    async def test_a_token_for_another_app_is_forbidden(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        await api.call("POST", "/apps", json={"name": "blog"})
        token = await make_token(api, app="blog")
        status, body, _ = await api.call("GET", "/auth/verify?app=shop", token=token)
        assert (status, body["id"]) == (403, "forbidden")

    async def test_an_admin_token_may_read_any_app(self, api: Api) -> None:
        status, body, _ = await api.call("GET", "/auth/verify?app=whatever")
        assert status == 200
        assert body["token"]["admin"] is True

    async def test_a_name_no_app_can_have_is_refused_even_for_an_admin(self, api: Api) -> None:
        status, body, _ = await api.call("GET", "/auth/verify?app=Not_An_App")
        assert (status, body["id"]) == (422, "invalid_name")

    async def test_a_name_with_a_trailing_newline_is_refused_as_the_document_says(
        self, api: Api
    ) -> None:
        """Python's ``$`` also matches before a final newline; JSON Schema's does not."""
        status, body, _ = await api.call("GET", "/auth/verify?app=shop%0A")
        assert (status, body["id"]) == (422, "invalid_name")


class TestApps:
    async def test_create_show_list_rename_delete(self, api: Api) -> None:
        status, app, _ = await api.call("POST", "/apps", json={"name": "shop"})
        assert status == 201
        assert (app["name"], app["current_release"]) == ("shop", 1)
        status, shown, _ = await api.call("GET", "/apps/shop")
        assert (status, shown["id"]) == (200, app["id"])
        status, renamed, _ = await api.call("PATCH", "/apps/shop", json={"name": "store"})
        assert (status, renamed["name"], renamed["id"]) == (200, "store", app["id"])
        assert (await api.call("GET", "/apps/shop"))[0] == 404
        status, deleted, _ = await api.call("DELETE", "/apps/store")
        assert (status, deleted["name"]) == (200, "store")
        status, listed, _ = await api.call("GET", "/apps")
        assert (status, listed) == (200, [])

    async def test_a_new_app_has_an_initial_release(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        _, releases, _ = await api.call("GET", "/apps/shop/releases")
        assert [(r["version"], r["description"], r["current"]) for r in releases] == [
            (1, "Initial release", True)
        ]

    async def test_a_taken_name_is_a_conflict(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        await api.call("POST", "/apps", json={"name": "blog"})
        status, body, _ = await api.call("POST", "/apps", json={"name": "shop"})
        assert (status, body["id"]) == (409, "name_taken")
        status, body, _ = await api.call("PATCH", "/apps/blog", json={"name": "shop"})
        assert (status, body["id"]) == (409, "name_taken")

    @pytest.mark.parametrize("name", ["Shop", "a", "1shop", "shop_1", "x" * 31, 42, None])
    async def test_an_invalid_name_is_refused_with_the_rule(self, api: Api, name: object) -> None:
        status, body, _ = await api.call("POST", "/apps", json={"name": name})
        assert (status, body["id"]) == (422, "invalid_name")
        assert "lowercase letters" in body["message"]

    async def test_a_missing_app_is_not_found(self, api: Api) -> None:
        for method in ("GET", "DELETE"):
            status, body, _ = await api.call(method, "/apps/ghost")
            assert (status, body) == (
                404,
                {"id": "app_not_found", "message": "no app named 'ghost'"},
            )

    async def test_a_body_that_is_not_json_is_a_bad_request(self, api: Api) -> None:
        status, body, _ = await api.call("POST", "/apps", data=b"{nope")
        assert (status, body["id"]) == (400, "bad_request")
        assert body["message"].startswith("the body is not valid JSON: Expecting property name")

    async def test_a_body_that_is_not_an_object_is_a_bad_request(self, api: Api) -> None:
        status, body, _ = await api.call("POST", "/apps", json=["shop"])
        assert (status, body["message"]) == (400, "the body must be a JSON object")

    async def test_a_missing_body_is_a_bad_request(self, api: Api) -> None:
        status, body, _ = await api.call("POST", "/apps")
        assert status == 400
        assert "JSON object body" in body["message"]

    async def test_unknown_body_fields_are_refused_by_name(self, api: Api) -> None:
        status, body, _ = await api.call("POST", "/apps", json={"name": "shop", "stack": "x"})
        assert (status, body) == (422, {"id": "unknown_fields", "message": "unknown fields: stack"})

    async def test_unknown_nested_fields_are_refused_with_their_path(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        status, body, _ = await api.call(
            "PATCH", "/apps/shop/formation", json={"updates": [{"type": "web", "quantitiy": 2}]}
        )
        assert (status, body["message"]) == (422, "unknown fields: updates.0.quantitiy")

    async def test_unknown_query_parameters_are_refused(self, api: Api) -> None:
        status, body, _ = await api.call("GET", "/apps?page=2")
        assert (status, body["message"]) == (400, "unknown query parameters: 'page'")

    async def test_an_unknown_path_and_a_wrong_method_answer_in_the_error_shape(
        self, api: Api
    ) -> None:
        status, body, _ = await api.call("GET", "/nowhere")
        assert (status, body["id"]) == (404, "not_found")
        status, body, headers = await api.call("PUT", "/apps")
        assert (status, body["id"]) == (405, "method_not_allowed")
        assert set(headers["Allow"].split(",")) == {"GET", "POST"}


class TestPagination:
    async def test_apps_come_in_pages_with_next_range(self, api: Api) -> None:
        names = [f"app-{i:02d}" for i in range(5)]
        for name in names:
            await api.call("POST", "/apps", json={"name": name})
        seen: list[str] = []
        headers = {"Range": "name ..; max=2"}
        for _ in range(5):
            status, page, response_headers = await api.call("GET", "/apps", headers=headers)
            seen += [a["name"] for a in page]
            if status == 200:
                break
            assert status == 206
            headers = {"Range": response_headers["Next-Range"]}
        assert seen == names
        assert status == 200

    async def test_releases_page_by_version(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        for i in range(3):
            await api.call("PATCH", "/apps/shop/config-vars", json={"N": str(i)})
        status, page, headers = await api.call(
            "GET", "/apps/shop/releases", headers={"Range": "version ]1..; max=2"}
        )
        assert (status, [r["version"] for r in page]) == (206, [2, 3])
        assert headers["Next-Range"] == "version ]3..; max=2"

    @pytest.mark.parametrize(
        ("header", "message"),
        [
            ("garbage", "bad Range header"),
            ("id ..; max=2", "ordered by 'name'"),
            ("name ..; max=0", "max must be from 1 to 1000"),
            ("name ..; max=5000", "max must be from 1 to 1000"),
        ],
    )
    async def test_a_bad_range_is_a_bad_request(self, api: Api, header: str, message: str) -> None:
        status, body, _ = await api.call("GET", "/apps", headers={"Range": header})
        assert (status, body["id"]) == (400, "bad_range")
        assert message in body["message"]

    async def test_a_non_numeric_version_cursor_is_a_bad_request(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        status, body, _ = await api.call(
            "GET", "/apps/shop/releases", headers={"Range": "version ]abc..; max=2"}
        )
        assert (status, body["id"]) == (400, "bad_range")
        assert "ordered by 'version'" in body["message"]

    @pytest.mark.parametrize("header", ["", "version ]1234567890123456789..; max=2"])
    async def test_an_empty_range_or_an_oversized_cursor_is_a_bad_request(
        self, api: Api, header: str
    ) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        status, body, _ = await api.call("GET", "/apps/shop/releases", headers={"Range": header})
        assert (status, body["id"]) == (400, "bad_range")


class TestAudit:
    async def test_every_change_is_recorded_with_actor_and_time(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        await api.call("PATCH", "/apps/shop/config-vars", json={"SECRET": "hunter2"})
        token = await make_token(api, app="shop")
        await api.call("PATCH", "/apps/shop/config-vars", json={"SECRET": None}, token=token)
        status, entries, _ = await api.call("GET", "/apps/shop/audit")
        assert status == 200
        actions = [(e["action"], e["actor"]) for e in entries]
        assert actions == [
            ("app.create", "token:bootstrap"),
            ("release.create", "token:bootstrap"),
            ("token.create", "token:bootstrap"),
            ("release.create", "token:t"),
        ]
        assert all(e["at"].endswith("Z") for e in entries)
        assert entries[1]["detail"]["set"] == ["SECRET"]
        assert "hunter2" not in str(entries)

    async def test_the_whole_log_is_for_admins(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        token = await make_token(api, app="shop")
        assert (await api.call("GET", "/audit", token=token))[0] == 403
        status, entries, _ = await api.call("GET", "/audit")
        assert status == 200
        assert [e["action"] for e in entries] == ["app.create", "token.create"]

    async def test_a_deleted_app_keeps_its_audit_entries(self, api: Api) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        await api.call("DELETE", "/apps/shop")
        _, entries, _ = await api.call("GET", "/audit")
        assert [(e["action"], e["app"]) for e in entries] == [
            ("app.create", "shop"),
            ("app.delete", "shop"),
        ]
