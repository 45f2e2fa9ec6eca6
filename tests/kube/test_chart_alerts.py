"""The chart's alerts fire: its PrometheusRule evaluated by promtool (Debian's prometheus).

Each alert is given series shaped as the code exports them (names and labels as in
router/counters.py, agent/kubernetes, logs/metrics.py, exporters/collector.py, plus the
``pod`` / ``job`` labels a scrape adds) and must fire, with its rendered summary, once its
``for`` has passed, and stay silent before then and on healthy series.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.test_chart import named, render, values_of

SUMMARIES = {
    "SlipwayNoAgentLeader": "No slipway agent replica leads; apps neither wake nor sleep.",
    "SlipwayAgentWatchUnhealthy": "The agent's deployments watch is failing.",
    "SlipwayLogsSpoolFilling": "The logs archive spool is filling; S3 uploads are failing or slow.",
    "SlipwayRouterErrors": "App blog answers 5xx to over 5% of requests.",
    "SlipwaySlowWakes": "Waking apps takes over 30 s (p95).",
    "SlipwayExporterTargetDown": "The exporter cannot poll orders-db (connect).",
}

WAKE_BOUNDS = ("0.1", "0.25", "0.5", "1", "2", "5", "10", "20", "30", "60", "+Inf")


def requests(app: str, status_class: str, values: str) -> dict[str, str]:
    labels = f'app="{app}",method="GET",status_class="{status_class}"'
    return {"series": f"slipway_router_requests_total{{{labels}}}", "values": values}


def wake_buckets(app: str, per_minute_under: dict[str, int]) -> list[dict[str, str]]:
    """Cumulative wake-time buckets growing by the given count per minute from each bound."""
    out, running = [], 0
    for le in WAKE_BOUNDS:
        running += per_minute_under.get(le, 0)
        out.append({
            "series": f'slipway_router_wake_duration_seconds_bucket{{app="{app}",le="{le}"}}',
            "values": f"0+{running}x60",
        })  # fmt: skip
    return out


#: alert -> (input series, (minute it must not fire yet, minute it fires), its labels)
CASES: dict[str, tuple[list[dict[str, str]], tuple[int, int], dict[str, str]]] = {
    "SlipwayNoAgentLeader": (
        [
            # agent-a led, then lost the Lease at minute 5; agent-b never took it.
            {"series": 'slipway_agent_leader{pod="agent-a"}', "values": "1x5 0x30"},
            {"series": 'slipway_agent_leader{pod="agent-b"}', "values": "0x35"},
        ],
        (6, 8),
        {},
    ),
    "SlipwayAgentWatchUnhealthy": (
        [
            {
                "series": 'slipway_agent_kube_watch_healthy{pod="agent-a",resource="deployments"}',
                "values": "1x5 0x30",
            },
            {
                "series": 'slipway_agent_kube_watch_healthy{pod="agent-a",resource="pods"}',
                "values": "1x35",
            },
        ],
        (9, 11),
        {"pod": "agent-a", "resource": "deployments"},
    ),
    "SlipwayLogsSpoolFilling": (
        # 400 MB then 500 MB, past 90% of the spool's 512 MiB.
        [
            {
                "series": 'slipway_logs_spool_bytes{pod="logs-0"}',
                "values": "400000000x5 500000000x30",
            }
        ],
        (14, 16),
        {},
    ),
    "SlipwayRouterErrors": (
        [
            # blog: from minute 10, 10 of 70 requests a minute are 5xx (14%); shop: 1 of 101.
            requests("blog", "2xx", "0+60x40"),
            requests("blog", "5xx", "0x10 0+10x30"),
            requests("shop", "2xx", "0+100x40"),
            requests("shop", "5xx", "0+1x40"),
        ],
        (20, 24),
        {"app": "blog"},
    ),
    "SlipwaySlowWakes": (
        # Every wake takes 30-60 s: the p95 is near 60.
        wake_buckets("blog", {"60": 4}),
        (14, 17),
        {},
    ),
    "SlipwayExporterTargetDown": (
        [
            {
                "series": "slipway_exporter_poll_error"
                '{job="slipway-exporter-postgres",target="orders-db",error="connect"}',
                "values": "_x5 1x30",
            }
        ],
        (14, 17),
        {"job": "slipway-exporter-postgres", "target": "orders-db", "error": "connect"},
    ),
}

#: Healthy series for every alert at once: none may fire.
HEALTHY: list[dict[str, str]] = [
    {"series": 'slipway_agent_leader{pod="agent-a"}', "values": "1x40"},
    {"series": 'slipway_agent_leader{pod="agent-b"}', "values": "0x40"},
    {"series": 'slipway_agent_kube_watch_healthy{pod="agent-a",resource="pods"}',
     "values": "1x40"},
    {"series": 'slipway_logs_spool_bytes{pod="logs-0"}', "values": "1000000x40"},
    requests("shop", "2xx", "0+100x40"),
    requests("shop", "5xx", "0+1x40"),
    *wake_buckets("shop", {"1": 10, "5": 1}),
]  # fmt: skip


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is not installed: bash .ci/services installs prometheus"
    return binary


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rule = named(render(values_of("full")), "PrometheusRule", "slipway-alerts")
    path = tmp_path_factory.mktemp("alerts") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def promtool_test(promtool: str, rules: Path, series: list[Any], evals: list[Any]) -> None:
    spec = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": evals}],
    }
    test = rules.parent / "test.yaml"
    test.write_text(yaml.safe_dump(spec))
    run(promtool, "test", "rules", str(test))


def test_the_rendered_rules_are_valid_prometheus_rules(promtool: str, rules: Path) -> None:
    done = run(promtool, "check", "rules", str(rules))
    assert "6 rules found" in done.stdout


@pytest.mark.parametrize("alert", sorted(CASES))
def test_each_alert_fires_after_its_for_and_not_before(
    promtool: str, rules: Path, alert: str
) -> None:
    series, (quiet, firing), labels = CASES[alert]
    severity = "critical" if alert == "SlipwayNoAgentLeader" else "warning"
    expected = {
        "exp_labels": {"severity": severity, **labels},
        "exp_annotations": {
            "summary": SUMMARIES[alert],
            "description": rule_description(rules, alert),
        },
    }
    evals = [
        {"eval_time": f"{quiet}m", "alertname": alert, "exp_alerts": []},
        {"eval_time": f"{firing}m", "alertname": alert, "exp_alerts": [expected]},
    ]
    promtool_test(promtool, rules, series, evals)


def test_no_alert_fires_on_a_healthy_platform(promtool: str, rules: Path) -> None:
    evals = [
        {"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": []}
        for alert in CASES
        for minute in (10, 39)
    ]
    promtool_test(promtool, rules, HEALTHY, evals)


def rule_description(rules: Path, alert: str) -> str:
    (group,) = yaml.safe_load(rules.read_text())["groups"]
    (rule,) = [r for r in group["rules"] if r["alert"] == alert]
    return str(rule["annotations"]["description"])
