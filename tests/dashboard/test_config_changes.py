"""A pasted .env block becomes config changes; the diff shown before a release."""

from __future__ import annotations

import pytest

from control.dashboard.confirm import config_diff, parse_env
from control.errors import BadRequest


def test_an_env_block_reads_as_a_shell_would() -> None:
    block = """
    # database
    DATABASE_POOL=5
    export SECRET_KEY='s3cr3t with spaces'
    GREETING="hello # not a comment"
    PLAIN=value # a comment
    EMPTY=
    """
    assert parse_env(block) == {
        "DATABASE_POOL": "5",
        "SECRET_KEY": "s3cr3t with spaces",
        "GREETING": "hello # not a comment",
        "PLAIN": "value",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("block", "says"),
    [
        ("A=1\nthis is not a variable\n", "line 2"),
        ("A='unterminated\n", "line 1"),
        ("# only a comment\n\n", "no KEY=value"),
        ("1ABC=x", "line 1"),
    ],
)
def test_a_bad_env_block_is_refused_with_the_line(block: str, says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        parse_env(block)


def test_the_diff_names_what_is_added_changed_and_removed() -> None:
    before = {"KEEP": "1", "CHANGE": "old", "DROP": "x"}
    after = {"KEEP": "1", "CHANGE": "new", "ADD": "y"}
    assert config_diff(before, after) == [
        ("added", "ADD", None, "y"),
        ("changed", "CHANGE", "old", "new"),
        ("removed", "DROP", "x", None),
    ]
    assert config_diff(before, before) == []
