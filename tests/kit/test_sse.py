"""kit.sse: one SSE parser, fed line by line, as every client of the logs stream reads it."""

from __future__ import annotations

from kit.sse import Event, Parser


def feed_all(parser: Parser, text: str) -> list[Event]:
    events = []
    for line in text.splitlines(keepends=True):
        event = parser.feed(line.encode())
        if event is not None:
            events.append(event)
    return events


def test_an_event_ends_at_a_blank_line_with_its_id_and_name() -> None:
    events = feed_all(Parser(), 'id: 7\ndata: {"text": "hi"}\n\nevent: missed\ndata: {}\n\n')
    assert events == [Event("message", "7", '{"text": "hi"}'), Event("missed", None, "{}")]


def test_multi_line_data_is_joined_with_newlines_and_crlf_is_accepted() -> None:
    assert feed_all(Parser(), "data: a\r\ndata: b\r\n\r\n") == [Event("message", None, "a\nb")]


def test_comments_are_counted_not_returned_and_blank_lines_alone_are_nothing() -> None:
    parser = Parser()
    assert feed_all(parser, ": heartbeat\n\n\n: heartbeat\n") == []
    assert parser.comments == 2


def test_a_field_without_a_space_after_the_colon_is_read_too() -> None:
    assert feed_all(Parser(), "id:3\ndata:x\n\n") == [Event("message", "3", "x")]


def test_invalid_utf8_is_replaced_rather_than_stopping_the_stream() -> None:
    parser = Parser()
    assert parser.feed(b"data: \xff\n") is None
    assert parser.feed(b"\n") == Event("message", None, "\ufffd")
