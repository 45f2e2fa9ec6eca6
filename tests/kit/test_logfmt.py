import io
import logging
import sys

from control.kit.logfmt import LogfmtFormatter, configure, format_fields, quote


def test_bare_values_stay_bare_and_others_are_quoted() -> None:
    assert quote("abc") == "abc"
    assert quote("a b") == '"a b"'
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("two\nlines") == '"two\\nlines"'
    assert quote("") == '""'
    assert quote(None) == '""'


def test_secrets_are_redacted_whatever_the_call_site_passes() -> None:
    line = format_fields({"app": "hello", "password": "hunter2", "database_dsn": "postgres://x"})
    assert "hunter2" not in line
    assert "postgres://x" not in line
    assert line == "app=hello password=[redacted] database_dsn=[redacted]"


def test_a_log_call_renders_message_and_extra_fields() -> None:
    stream = io.StringIO()
    configure("DEBUG", stream)
    logging.getLogger("slipway.test").info("app woke", extra={"app": "hello", "wake_ms": 812})
    line = stream.getvalue().strip()
    assert line.startswith("ts=")
    assert 'level=info logger=slipway.test msg="app woke" app=hello wake_ms=812' in line


def test_an_exception_is_one_field_not_a_stack_on_stderr() -> None:
    record = logging.makeLogRecord({"msg": "failed", "levelname": "ERROR", "name": "x"})
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = LogfmtFormatter().format(record)
    assert 'error="ValueError: boom"' in line
    assert "\n" not in line
