"""The Grafana dashboards in charts/ are built on names the exporters really emit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from exporters import postgres, redis_info
from exporters.samples import EXPORTER_FAMILIES

DASHBOARDS = Path(__file__).resolve().parents[2] / "charts" / "slipway" / "dashboards"
SELECTOR = re.compile(r"\b([a-z_][a-z0-9_]*)\{")
PROMQL_FUNCTIONS = {"label_values"}
EMITTED = {
    "postgres-addons.json": set(postgres.FAMILIES) | set(EXPORTER_FAMILIES),
    "redis-addons.json": set(redis_info.FAMILIES) | set(EXPORTER_FAMILIES),
}


def exprs(board: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found


@pytest.mark.parametrize("name", sorted(EMITTED))
class TestDashboards:
    def test_every_metric_a_panel_asks_for_is_emitted(self, name: str) -> None:
        board = json.loads((DASHBOARDS / name).read_text())
        asked = {m for e in exprs(board) for m in SELECTOR.findall(e)} - PROMQL_FUNCTIONS
        assert asked, "no metric selectors found"
        assert asked <= EMITTED[name], asked - EMITTED[name]

    def test_panels_have_unique_ids_fit_the_grid_and_use_the_datasource_variable(
        self, name: str
    ) -> None:
        board = json.loads((DASHBOARDS / name).read_text())
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}"
                assert panel["targets"]
        assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "app", "target"}
