"""The product's modules stay a few hundred lines; a longer one says why at its top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kit", "router", "agent", "logs", "exporters", "control")
#: Past this a module is split by concept, or its docstring says why not (STYLE.md: kopf's
#: modules of a few hundred lines).
LONG = 500
REASON = "Long because:"


def long_modules_without_a_reason(root: Path) -> list[str]:
    """Modules of the product over LONG lines whose docstring has no 'Long because:' line."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text()
            if text.count("\n") <= LONG:
                continue
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if not any(line.startswith(REASON) for line in docstring.splitlines()):
                found.append(f"{path.relative_to(root)}: {text.count(chr(10))} lines")
    return found


def test_every_module_over_500_lines_says_why_it_is_long() -> None:
    assert long_modules_without_a_reason(ROOT) == [], (
        f"split these by concept, or add a line starting {REASON!r} to the module docstring"
    )


def test_a_long_module_without_a_reason_is_named(tmp_path: Path) -> None:
    (tmp_path / "router").mkdir()
    body = "x = 1\n" * LONG
    (tmp_path / "router" / "short.py").write_text('"""Short."""\n' + "x = 1\n" * 10)
    (tmp_path / "router" / "reasoned.py").write_text(f'"""{REASON} it is.\nWhat."""\n' + body)
    (tmp_path / "router" / "silent.py").write_text('"""What.\n\nMore."""\n' + body)
    assert long_modules_without_a_reason(tmp_path) == ["router/silent.py: 503 lines"]
