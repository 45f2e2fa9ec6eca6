from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.settings import BuildSettings
from tests.builds.apps import RecordingSink


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def settings(tmp_path: Path) -> BuildSettings:
    # --no-index: every dependency in these tests is a local wheel; nothing may reach an index.
    return BuildSettings(root=tmp_path / "builds", pip_args=("--no-index",), timeout=60)


@pytest.fixture
def builder(
    settings: BuildSettings, sink: RecordingSink, registry: CollectorRegistry
) -> LocalBuilder:
    return LocalBuilder(settings, sink=sink, metrics=BuildMetrics(registry), clock=lambda: 1000.0)
