"""The pure rules, without a server: what they accept, compute and refuse."""

from __future__ import annotations

import pytest

from control.errors import Unprocessable
from control.rules import (
    apply_config_changes,
    apply_formation_update,
    as_int,
    default_formation,
    validate_procfile,
)


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
