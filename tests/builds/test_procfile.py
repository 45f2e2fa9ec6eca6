"""Procfile parsing, as Heroku reads the file."""

from __future__ import annotations

import pytest

from control.builds.errors import ProcfileError
from control.builds.procfile import parse_procfile


def test_process_types_are_read_in_order_skipping_comments_and_blank_lines() -> None:
    text = (
        "# the web process\n"
        "web: gunicorn app:app --bind 0.0.0.0:$PORT\n"
        "\n"
        "   \n"
        "worker:python worker.py  \n"
        "release_task: python -m migrate\n"
    )
    assert list(parse_procfile(text).items()) == [
        ("web", "gunicorn app:app --bind 0.0.0.0:$PORT"),
        ("worker", "python worker.py"),
        ("release_task", "python -m migrate"),
    ]


def test_a_colon_inside_the_command_belongs_to_the_command() -> None:
    assert parse_procfile("web: python -c 'print(1)' --url http://x:1/\n") == {
        "web": "python -c 'print(1)' --url http://x:1/"
    }


def test_windows_line_endings_are_accepted() -> None:
    assert parse_procfile("web: a\r\nworker: b\r\n") == {"web": "a", "worker": "b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("web python app.py\n", r"line 1: expected 'name: command'"),
        ("web: a\nweb: b\n", r"line 2: process 'web' is defined twice"),
        ("web:\n", r"line 1: process 'web' has no command"),
        ("my web: a\n", r"line 1: process name 'my web' may hold only"),
        ("we.b: a\n", r"line 1: process name 'we.b' may hold only"),
        (": a\n", r"line 1: process name '' may hold only"),
        ("x" * 64 + ": a\n", r"line 1: process name 'x+' is over 63 characters"),
        ("# only a comment\n\n", r"Procfile: defines no process types"),
        ("", r"Procfile: defines no process types"),
    ],
)
def test_malformed_procfiles_are_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ProcfileError, match=message):
        parse_procfile(text)
