"""One-off runs' pure parts: the exit code from what an agent sent, output cut into lines."""

from __future__ import annotations

from control.api.runs import dyno_name, exit_code
from control.releasing import PhaseResult
from kit.oneoff import Lines, Watcher


def watcher(code: int | None = None) -> Watcher:
    return Watcher(on_output=lambda _: None, code=code)


def test_the_code_seen_here_wins() -> None:
    assert exit_code(PhaseResult(ok=False, output="command exited with code 2"), watcher(9)) == 9


def test_an_agent_elsewhere_says_it_in_the_tail() -> None:
    tail = "Traceback ...\nValueError\ncommand exited with code 3\n"
    assert exit_code(PhaseResult(ok=False, output=tail), watcher()) == 3
    assert exit_code(PhaseResult(ok=True, output="all good"), watcher()) == 0
    # Killed, timed out, or a Job that failed: no code in the tail, so 1, never 0.
    timed_out = PhaseResult(ok=False, output="command timed out after 60s")
    assert exit_code(timed_out, watcher()) == 1


def test_chunks_become_whole_lines_even_mid_character() -> None:
    lines: list[str] = []
    cut = Lines(lines.append)
    snowman = "☃".encode()
    cut.feed(b"one\ntw")
    cut.feed(b"o " + snowman[:1])
    cut.feed(snowman[1:] + b"\nthree")
    assert lines == ["one", "two ☃"]
    cut.flush()
    assert lines == ["one", "two ☃", "three"]


def test_one_off_names_are_herokus() -> None:
    name = dyno_name()
    assert name.startswith("run.")
    assert 1000 <= int(name[4:]) <= 9999
