"""The pure rules, without a server: what they accept, compute and refuse."""

from __future__ import annotations

import pytest

from control.errors import ApiError, Conflict, Forbidden, Unprocessable
from control.models import Formation
from control.rules import (
    apply_config_changes,
    apply_formation_update,
    as_int,
    check_custom_domain,
    check_process_ceiling,
    default_formation,
    validate_app_name,
    validate_config_changes,
    validate_hostname,
    validate_procfile,
)
from control.settings import Limits, limits_from_env


class TestConfigChanges:
    def test_null_unsets_and_unsetting_a_missing_key_is_harmless(self) -> None:
        assert apply_config_changes({"A": "1", "B": "2"}, {"A": None, "C": None, "B": "3"}) == {
            "B": "3"
        }

    def test_the_limit_counts_bytes_not_characters(self) -> None:
        with pytest.raises(Unprocessable, match="would take 32770 bytes"):
            apply_config_changes({}, {"K": "☃" * 10923})  # 3 bytes each, plus the key


class TestIntegers:
    @pytest.mark.parametrize(
        ("value", "expected"), [(2, 2), (2.0, 2), (2.5, None), (True, None), ("2", None)]
    )
    def test_json_integers_are_ints_or_integral_floats_never_booleans(
        self, value: object, expected: int | None
    ) -> None:
        assert as_int(value) == expected


class TestFormation:
    def test_an_update_keeps_what_it_does_not_name_and_stamps_the_time(self) -> None:
        web = default_formation("web", now=1.0)
        updated = apply_formation_update(web, {"quantity": 3}, now=5.0)
        assert (updated.quantity, updated.idle_after, updated.max_scale, updated.updated_at) == (
            3,
            300.0,
            10,
            5.0,
        )

    def test_web_starts_at_one_and_other_types_at_zero(self) -> None:
        assert default_formation("web", now=0).quantity == 1
        assert default_formation("worker", now=0).quantity == 0


class TestProcfile:
    def test_a_release_entry_is_a_valid_process_name(self) -> None:
        assert validate_procfile({"web": "run", "release": "migrate"}) == {
            "web": "run",
            "release": "migrate",
        }

    def test_a_procfile_that_is_not_an_object_is_refused(self) -> None:
        with pytest.raises(Unprocessable, match="procfile must be a non-empty object"):
            validate_procfile(["web: run"])


class TestNamesMatchWhole:
    @pytest.mark.parametrize("name", ["shop\n", "shop\r\n", "\nshop", "sh\nop"])
    def test_an_app_name_with_a_newline_is_refused(self, name: str) -> None:
        with pytest.raises(Unprocessable, match="is invalid"):
            validate_app_name(name)

    def test_a_config_var_name_with_a_trailing_newline_is_refused(self) -> None:
        with pytest.raises(Unprocessable, match="config var name 'KEY\\\\n' is invalid"):
            validate_config_changes({"KEY\n": "v"})

    def test_a_process_type_with_a_trailing_newline_is_refused(self) -> None:
        with pytest.raises(Unprocessable, match="process type 'web\\\\n' is invalid"):
            validate_procfile({"web\n": "x"})


class TestHostnames:
    @pytest.mark.parametrize(
        ("given", "kept"),
        [
            ("WWW.Example.COM.", "www.example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ],
    )
    def test_a_host_name_is_kept_lower_case_without_its_final_dot(
        self, given: str, kept: str
    ) -> None:
        assert validate_hostname(given) == kept

    @pytest.mark.parametrize(
        "host",
        [
            "127.0.0.1",
            "10.1",
            "0x7f.1",
            "1.2.3.4.",
            "localhost",
            "www.example.com\n",
            "a..b",
            "-a.example.com",
            "a.-b",
            "a" * 64 + ".com",
            ("a" * 60 + ".") * 5 + "com",
            "exa mple.com",
            "[::1]",
            7,
        ],
    )
    def test_what_is_no_public_host_name_is_refused(self, host: object) -> None:
        with pytest.raises(Unprocessable, match=r"is invalid: a DNS name like www\.example\.com"):
            validate_hostname(host)


def domain_refusal(host: str, *, app: str = "shop", tenant: bool = True) -> ApiError | None:
    try:
        check_custom_domain(
            host, app=app, app_domain="apps.test", reserved=("apps.test", "pr.test"), tenant=tenant
        )
    except ApiError as exc:
        return exc
    return None


class TestCustomDomainRules:
    def test_an_app_may_add_names_under_its_own_default_domain(self) -> None:
        assert domain_refusal("www.shop.apps.test") is None
        assert domain_refusal("a.b.shop.apps.test") is None

    def test_its_own_default_domain_is_already_there(self) -> None:
        assert isinstance(domain_refusal("shop.apps.test"), Conflict)

    @pytest.mark.parametrize("host", ["blog.apps.test", "www.blog.apps.test"])
    def test_an_app_token_may_not_take_another_apps_names(self, host: str) -> None:
        refusal = domain_refusal(host)
        assert isinstance(refusal, Conflict)
        assert "the default domain of the app blog" in str(refusal)

    def test_an_admin_may_not_give_one_apps_default_domain_to_another(self) -> None:
        assert isinstance(domain_refusal("blog.apps.test", tenant=False), Conflict)
        assert domain_refusal("www.blog.apps.test", tenant=False) is None

    @pytest.mark.parametrize("host", ["apps.test", "pr.test", "pr-7.pr.test", "db.internal"])
    def test_the_platforms_names_are_an_admins_to_give(self, host: str) -> None:
        assert isinstance(domain_refusal(host), Forbidden)
        assert domain_refusal(host, tenant=False) is None

    def test_a_public_name_is_anyones(self) -> None:
        assert domain_refusal("www.example.com") is None


def formation(process: str, quantity: int, *, min_scale: int = 0, max_scale: int = 10) -> Formation:
    return Formation(
        type=process,
        quantity=quantity,
        idle_after=300.0,
        min_scale=min_scale,
        max_scale=max_scale,
        never_sleep=False,
        updated_at=0.0,
    )


class TestProcessCeiling:
    def check(self, before: list[Formation], after: list[Formation]) -> None:
        check_process_ceiling("shop", before, after, ceiling=10, variable="SLIPWAY_X")

    def test_processes_are_counted_over_every_type_and_min_scale(self) -> None:
        before = [formation("web", 1), formation("worker", 0)]
        self.check(before, [formation("web", 5), formation("worker", 5)])
        with pytest.raises(Unprocessable, match=r"shop would run 11 processes; at most 10 per app"):
            self.check(before, [formation("web", 6), formation("worker", 5)])
        with pytest.raises(Unprocessable, match=r"an operator raises it with SLIPWAY_X"):
            self.check(before, [formation("web", 1, min_scale=10), formation("worker", 1)])

    def test_max_scale_past_the_ceiling_is_refused_when_raised(self) -> None:
        with pytest.raises(Unprocessable, match="max_scale 11 of web is above 10"):
            self.check([formation("web", 1)], [formation("web", 1, max_scale=11)])
        self.check([formation("web", 1, max_scale=20)], [formation("web", 1, max_scale=20)])

    def test_an_app_above_the_ceiling_may_scale_down(self) -> None:
        self.check([formation("web", 30, max_scale=30)], [formation("web", 20, max_scale=30)])


class TestLimitsFromTheEnvironment:
    def test_unset_variables_keep_the_defaults(self) -> None:
        assert limits_from_env({}) == Limits()
        assert Limits().processes(admin=False) == (10, "SLIPWAY_MAX_PROCESSES_PER_APP")

    def test_variables_set_the_ceilings(self) -> None:
        limits = limits_from_env(
            {"SLIPWAY_MAX_PROCESSES_PER_APP": "4", "SLIPWAY_MAX_UPLOAD_BYTES": "1000"}
        )
        assert (limits.processes_per_app, limits.upload_bytes) == (4, 1000)

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"SLIPWAY_MAX_PROCESSES_PER_APP": "ten"}, "must be a whole number"),
            ({"SLIPWAY_MAX_PROCESSES_PER_APP": "\u0661"}, "must be a whole number"),
            ({"SLIPWAY_MAX_PROCESSES_PER_APP_ADMIN": "500"}, "<= 100"),
            ({"SLIPWAY_MAX_PROCESSES_PER_APP": "0"}, "1 <= SLIPWAY_MAX_PROCESSES_PER_APP"),
        ],
    )
    def test_a_bad_value_says_what_is_allowed(self, env: dict[str, str], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            limits_from_env(env)
