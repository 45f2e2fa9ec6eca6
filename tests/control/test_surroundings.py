"""What surrounds the API: serve's flags, metrics, the targets file's escaping."""

from __future__ import annotations

import tomllib
from pathlib import Path

from click.testing import CliRunner

from control import exporter_targets
from control.cli import main
from control.models import Addon
from tests.control.conftest import Api


def addon(name: str, app: str, service: str = "postgres") -> Addon:
    return Addon(
        id=name, app=app, name=name, service=service, plan="mini", attachment="DATABASE",
        url=f"postgresql://{name}:pw@127.0.0.1/{name}", resource=name, created_at=0.0,
    )  # fmt: skip


class TestServeFlags:
    def test_a_bad_release_timeout_is_refused_before_starting(self) -> None:
        result = CliRunner().invoke(main, ["serve", "control", "--release-timeout", "soon"])
        assert result.exit_code == 2
        assert "not a duration: 'soon'" in result.output


class TestMetrics:
    async def test_requests_are_counted_by_route_template_and_status(self, api: Api) -> None:
        await api.call("GET", "/apps/ghost")
        async with api.session.get(api.base + "/metrics") as response:
            text = await response.text()
        assert (
            'slipway_control_requests_total{method="GET",route="/apps/{app}",status="404"} 1.0'
            in text
        )
        assert "ghost" not in text


class TestTargetsFile:
    def test_odd_names_are_escaped_into_valid_toml(self, tmp_path: Path) -> None:
        text = exporter_targets.render(
            [addon("postgres-1", 'we"ird\\app')], service="postgres", dsn_dir=tmp_path
        )
        parsed = tomllib.loads(text)
        assert parsed["targets"][0]["labels"]["app"] == 'we"ird\\app'

    def test_only_the_services_addons_are_listed(self, tmp_path: Path) -> None:
        addons = [addon("postgres-1", "a"), addon("redis-1", "a", service="redis")]
        text = exporter_targets.render(addons, service="redis", dsn_dir=tmp_path)
        assert [t["name"] for t in tomllib.loads(text)["targets"]] == ["redis-1"]

    def test_an_empty_registry_writes_empty_files(self, tmp_path: Path) -> None:
        exporter_targets.write_sync(tmp_path, [])
        assert tomllib.loads((tmp_path / "postgres-targets.toml").read_text()) == {}
        assert list((tmp_path / "dsn").iterdir()) == []
