"""The shipped Fluent Bit configuration agrees with what the logs service expects."""

from __future__ import annotations

from pathlib import Path

from logs.mapping import APP_LABEL
from logs.model import APP_NAME

FILES = Path(__file__).parents[2] / "charts" / "slipway" / "files" / "fluent-bit"


def sections(path: Path) -> list[tuple[str, dict[str, str]]]:
    """Fluent Bit's classic format: ``[SECTION]`` then indented ``Key  Value`` lines."""
    out: list[tuple[str, dict[str, str]]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            out.append((line[1:-1], {}))
            continue
        key, _, value = line.partition(" ")
        out[-1][1][key] = value.strip()
    return out


def named(kind: str, name: str) -> dict[str, str]:
    [found] = [s for k, s in sections(FILES / "fluent-bit.conf") if k == kind and s["Name"] == name]
    return found


class TestFluentBitConfig:
    def test_the_forward_output_asks_for_acks_gzip_and_the_shared_key(self) -> None:
        out = named("OUTPUT", "forward")
        assert out["Require_ack_response"] == "True"
        assert out["Compress"] == "gzip"
        assert out["Shared_Key"] == "${SLIPWAY_LOGS_SHARED_KEY}"
        assert out["Match"] == "kube.*"

    def test_the_grep_filter_keeps_exactly_the_pods_the_service_can_map(self) -> None:
        grep = named("FILTER", "grep")
        field, _, pattern = grep["Regex"].partition(" ")
        assert field == f"$kubernetes['labels']['{APP_LABEL}']"
        assert pattern.strip() == APP_NAME.pattern

    def test_the_tail_input_uses_the_cri_parser_and_disk_buffering(self) -> None:
        tail = named("INPUT", "tail")
        assert tail["multiline.parser"].startswith("cri")
        assert tail["storage.type"] == "filesystem"

    def test_the_parsers_file_named_by_service_exists_and_has_a_cri_parser(self) -> None:
        [service] = [s for k, s in sections(FILES / "fluent-bit.conf") if k == "SERVICE"]
        parsers = sections(FILES / service["Parsers_File"])
        assert [s["Name"] for _, s in parsers] == ["cri-regex"]
