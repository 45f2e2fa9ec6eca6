"""Bodies become typed requests once, at the edge, by the rules the schema also states."""

from __future__ import annotations

import re
from typing import Any

import pytest

from control import rules
from control.api import parse, schemas
from control.api.routes import openapi
from control.errors import BadRequest, Unprocessable
from control.models import Formation
from control.requests import AddonCreate, Deploy, FormationChange, Rollback, TokenCreate


class TestReleaseBodies:
    def test_a_release_number_is_a_rollback_and_anything_else_a_deploy(self) -> None:
        assert parse.release({"release": 3.0}) == Rollback(version=3)
        deploy = parse.release({"artifact": "/srv/a", "procfile": {"web": "run"}})
        assert deploy == Deploy(artifact="/srv/a", procfile={"web": "run"}, description=None)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"release": 0}, "release must be a release version number (v3 is 3)"),
            ({"release": True}, "release must be a release version number (v3 is 3)"),
            ({"procfile": {"web": "run"}}, "artifact must be a string of 1-1000 characters"),
            ({"artifact": "/a", "procfile": []}, "procfile must be a non-empty object"),
            (
                {"artifact": "/a", "procfile": {"web": "run"}, "description": 7},
                "description must be a string of at most 500 characters",
            ),
        ],
    )
    def test_a_bad_release_body_is_refused_with_the_rule(
        self, body: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(Unprocessable, match=re.escape(message)):
            parse.release(body)


class TestFormationBodies:
    def test_a_change_keeps_only_what_it_names(self) -> None:
        [change] = parse.formation_batch({"updates": [{"type": "web", "idle_after": 60}]})
        assert change == FormationChange(type="web", idle_after=60.0)
        assert change.given() == {"type": "web", "idle_after": 60.0}

    def test_the_path_names_the_type_of_a_single_change(self) -> None:
        assert parse.formation_one("worker", {"quantity": 2.0}) == FormationChange(
            type="worker", quantity=2
        )

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"updates": []}, "updates must be a non-empty list"),
            ({"updates": [{"quantity": 1}]}, "each update needs a process type"),
            ({"updates": [{"type": "web", "quantity": 101}]}, "quantity must be an integer"),
            ({"updates": [{"type": "web", "never_sleep": 1}]}, "never_sleep must be true"),
            ({"updates": [{"type": "web", "idle_after": 0}]}, "idle_after must be a number"),
        ],
    )
    def test_a_bad_formation_body_is_refused_with_the_rule(
        self, body: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(Unprocessable, match=re.escape(message)):
            parse.formation_batch(body)

    def test_a_change_is_checked_as_a_whole_against_the_current_formation(self) -> None:
        web = Formation("web", 1, 300.0, 0, 2, False, updated_at=0.0)
        with pytest.raises(Unprocessable, match="quantity 3 exceeds max_scale 2"):
            rules.apply_formation_change(web, FormationChange(type="web", quantity=3), now=1.0)
        raised = rules.apply_formation_change(web, FormationChange("web", max_scale=5), now=1.0)
        assert (raised.quantity, raised.max_scale, raised.updated_at) == (1, 5, 1.0)


class TestOtherBodies:
    def test_an_addon_body_names_its_plan_and_maybe_its_attachment(self) -> None:
        assert parse.addon({"plan": "redis"}) == AddonCreate(plan="redis")
        named = parse.addon({"plan": "postgres:mini", "attachment": {"name": "ANALYTICS"}})
        assert named == AddonCreate(plan="postgres:mini", attachment="ANALYTICS")

    def test_an_attachment_name_is_checked_whole(self) -> None:
        with pytest.raises(Unprocessable) as raised:
            parse.addon({"plan": "redis", "attachment": {"name": "CACHE\n"}})
        assert raised.value.id == "invalid_attachment"

    def test_a_token_is_admin_or_for_one_app(self) -> None:
        assert parse.token({"name": "ci", "admin": True}) == TokenCreate(name="ci")
        assert parse.token({"name": "ci", "app": "shop"}).admin is False
        with pytest.raises(Unprocessable, match="either admin or for one app"):
            parse.token({"name": "ci"})
        with pytest.raises(BadRequest, match="admin must be true/false"):
            parse.token({"name": "ci", "admin": "yes"})

    def test_a_host_name_is_lower_cased_once(self) -> None:
        assert parse.hostname({"hostname": "WWW.Example.com."}) == "www.example.com"


class TestOneStatementOfTheRules:
    def test_the_documents_patterns_are_the_rules_anchored(self) -> None:
        components = openapi()["components"]["schemas"]
        assert components["App"]["properties"]["name"]["pattern"] == f"^{rules.APP_NAME.pattern}$"
        assert schemas.CONFIG_PATCH["propertyNames"]["pattern"] == f"^{rules.CONFIG_KEY.pattern}$"
        attachment = schemas.ADDON_CREATE["properties"]["attachment"]["properties"]["name"]
        assert attachment["pattern"] == f"^{rules.ATTACHMENT.pattern}$"

    def test_the_documents_bounds_are_the_rules_bounds(self) -> None:
        deploy = schemas.RELEASE_CREATE["oneOf"][0]["properties"]
        assert deploy["artifact"]["maxLength"] == rules.MAX_ARTIFACT
        assert deploy["description"]["maxLength"] == rules.MAX_DESCRIPTION
        assert schemas.FORMATION_FIELDS["quantity"]["maximum"] == rules.MAX_QUANTITY
        assert schemas.FORMATION_FIELDS["idle_after"]["maximum"] == rules.MAX_IDLE_AFTER
        assert schemas.TOKEN_NAME["maxLength"] == rules.MAX_TOKEN_NAME
