import ast
import io
import logging
import sys
from pathlib import Path

from kit.logfmt import LogfmtFormatter, configure, format_fields, quote


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


def test_no_log_call_in_slipway_passes_a_reserved_field_in_extra() -> None:
    """``extra={"process": ...}`` raises KeyError, but only once that level is enabled."""
    reserved = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for package in ("router", "agent", "logs", "exporters", "control"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                for keyword in node.keywords:
                    if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                        for key in keyword.value.keys:
                            if isinstance(key, ast.Constant) and key.value in reserved:
                                where = f"{path.relative_to(root)}:{node.lineno}"
                                offenders.append(f"{where} {key.value}")
    assert offenders == []
