"""What an operator relies on: strict values, extension points, alerts, `helm test`, NOTES."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.kube.test_chart import (
    CHART,
    CONTROL,
    CRDS,
    KUBE_VERSION,
    NAMESPACE,
    ROOT,
    named,
    of_kind,
    render,
    values_of,
    with_required,
)
from tests.kube.test_chart_env import read_by
from tests.kube.test_tenant_pods import restricted_violations


def notes(values: dict[str, Any]) -> str:
    with helm.Chart.load(str(CHART)) as loaded:
        files = loaded.render(values, name="slipway", namespace=NAMESPACE)
    return files["slipway/templates/NOTES.txt"]


class TestStrictValues:
    @pytest.mark.parametrize(
        ("values", "complaint"),
        [
            ({"router": {"replica": 3}}, "replica"),
            ({"routr": {"replicas": 3}}, "routr"),
            ({"logs": {"enabled": "no"}}, "/logs/enabled"),
            ({"agent": {"token": "short"}}, "/agent/token"),
            ({"agent": {"extraEnv": [{"value": "x"}]}}, "/agent/extraEnv/0"),
            ({"networkPolicy": {"blockedCIDRs": ["everything"]}}, "/networkPolicy/blockedCIDRs"),
            ({"prometheusRule": {"errorRatio": 5}}, "/prometheusRule/errorRatio"),
        ],
    )
    def test_a_misspelt_or_mistyped_value_is_refused_naming_it(
        self, values: dict[str, Any], complaint: str
    ) -> None:
        with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
            render(with_required(values))

    def test_every_object_in_the_schema_refuses_unknown_keys(self) -> None:
        schema = json.loads((CHART / "values.schema.json").read_text())

        def walk(node: dict[str, Any], path: str) -> None:
            if "properties" in node:
                assert node.get("additionalProperties") is False, path
                for key, child in node["properties"].items():
                    walk(child, f"{path}.{key}")

        walk(schema, "")


class TestExtensionPoints:
    def test_each_component_takes_env_pod_and_service_account_annotations_and_spread(
        self,
    ) -> None:
        extras = {
            "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
            "podAnnotations": {"example.com/team": "platform"},
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:r"}},
            "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "slipway"}},
            }],
            "nodeSelector": {"pool": "platform"},
        }  # fmt: skip
        values = with_required({
            "router": extras, "agent": extras, "logs": extras,
            "control": {**CONTROL, **extras},
            "exporters": {"postgres": extras, "redis": extras},
        })  # fmt: skip
        docs = render(values)
        deployments = of_kind(docs, "Deployment")
        assert len(deployments) == 6
        for dep in deployments:
            name = dep["metadata"]["name"]
            template = dep["spec"]["template"]
            pod = template["spec"]
            assert template["metadata"]["annotations"]["example.com/team"] == "platform", name
            assert extras["extraEnv"][0] in pod["containers"][0]["env"], name
            assert pod["topologySpreadConstraints"] == extras["topologySpreadConstraints"], name
            assert pod["nodeSelector"] == {"pool": "platform"}, name
            sa = named(docs, "ServiceAccount", pod["serviceAccountName"])
            assert sa["metadata"]["annotations"] == extras["serviceAccount"]["annotations"], name


class TestAlerts:
    def code_metrics(self) -> set[str]:
        text = "\n".join(
            p.read_text()
            for pkg in ("router", "agent", "logs", "exporters")
            for p in (ROOT / pkg).rglob("*.py")
        )
        return set(re.findall(r'"(slipway_[a-z_]+)"', text))

    def test_the_rules_query_only_metrics_the_code_exports(self) -> None:
        rule = named(render(values_of("full")), "PrometheusRule", "slipway-alerts")
        exported = self.code_metrics()
        (group,) = rule["spec"]["groups"]
        alerts = {r["alert"]: r["expr"] for r in group["rules"]}
        assert set(alerts) == {
            "SlipwayNoAgentLeader", "SlipwayAgentWatchUnhealthy", "SlipwayLogsSpoolFilling",
            "SlipwayRouterErrors", "SlipwaySlowWakes", "SlipwayExporterTargetDown",
        }  # fmt: skip
        for alert, expr in alerts.items():
            for metric in re.findall(r"\bslipway_[a-z_]+", expr):
                base = re.sub(r"_(total|bucket)$", "", metric)
                assert metric in exported or base in exported, (alert, metric)
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    def test_alerts_are_opt_in(self) -> None:
        assert of_kind(render(values_of("default")), "PrometheusRule") == []

    @pytest.mark.parametrize("key", ["serviceMonitor", "prometheusRule"])
    def test_monitoring_objects_without_the_operator_s_crds_are_refused_saying_so(
        self, key: str
    ) -> None:
        with pytest.raises(
            helm.HelmRenderError, match=re.escape("--api-versions monitoring.coreos.com/v1")
        ):
            render(with_required({key: {"enabled": True}}))


class TestHelmTest:
    def test_helm_test_asks_the_router_and_control_if_they_are_ready(self) -> None:
        docs = render(values_of("full"))
        (pod,) = of_kind(docs, "Pod")
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        (container,) = pod["spec"]["containers"]
        assert container["args"] == [
            f"http://slipway-router.{NAMESPACE}.svc:9080",
            f"http://slipway-control.{NAMESPACE}.svc:8000",
        ]
        assert "/readyz" in container["command"][-1]
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


class TestLogsSpool:
    def test_the_spool_is_a_kept_claim_by_default_and_an_empty_dir_on_request(self) -> None:
        docs = render(values_of("default"))
        claim = named(docs, "PersistentVolumeClaim", "slipway-logs-spool")
        assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        pod = named(docs, "Deployment", "slipway-logs")["spec"]["template"]["spec"]
        spool = next(v for v in pod["volumes"] if v["name"] == "spool")
        assert spool == {
            "name": "spool",
            "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
        }
        plain = render(with_required({"logs": {"spool": {"persistence": {"enabled": False}}}}))
        pod = named(plain, "Deployment", "slipway-logs")["spec"]["template"]["spec"]
        assert {"name": "spool", "emptyDir": {"sizeLimit": "1Gi"}} in pod["volumes"]


class TestNotes:
    def test_notes_promise_https_only_with_a_certificate(self) -> None:
        plain = notes(values_of("default"))
        assert "http://<app>.apps.example.com" in plain
        assert "https://" not in plain
        assert "No TLS: set ingress.tlsSecret" in plain
        assert "https://<app>.apps.example.org" in notes(values_of("full"))

    def test_notes_say_how_to_reach_control_and_what_logs_need(self) -> None:
        full = notes(values_of("full"))
        assert "export SLIPWAY_API_URL=https://slipway.example.org" in full
        assert "charts/fluent-bit-values.yaml" in full
        assert "slipway-forward-key" in full
        inside = notes(with_required({"control": CONTROL}))
        assert "port-forward svc/slipway-control 8000" in inside
        minimal = notes(values_of("minimal"))
        assert "No Ingress" in minimal
        assert "Fluent Bit" not in minimal
        assert "No control plane" in minimal


class TestOverprovisioning:
    def test_placeholders_are_off_by_default(self) -> None:
        docs = render(values_of("default"))
        assert of_kind(docs, "PriorityClass") == []

    def test_placeholders_hold_room_below_apps_and_above_the_autoscaler_cutoff(self) -> None:
        values = with_required(
            {
                "overprovisioning": {
                    "enabled": True,
                    "replicas": 2,
                    "resources": {"cpu": "2", "memory": "4Gi"},
                }
            }
        )
        docs = render(values)
        priority = named(docs, "PriorityClass", "slipway-overprovisioning")
        assert -10 <= priority["value"] < 0
        assert priority["globalDefault"] is False
        dep = named(docs, "Deployment", "slipway-overprovisioning")
        assert dep["spec"]["replicas"] == 2
        pod = dep["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == "slipway-overprovisioning"
        (container,) = pod["containers"]
        assert container["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
        assert restricted_violations(pod) == []
        for doc in docs:
            if doc["kind"] in ("PriorityClass", "Deployment"):
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)

    def test_a_priority_that_would_outrank_apps_is_refused(self) -> None:
        with pytest.raises(helm.HelmValuesError, match=re.escape("/overprovisioning/priority")):
            render(with_required({"overprovisioning": {"priority": 100}}))


class TestInstallGuide:
    """docs/kubernetes.md's install, as an operator copies it: the values and the Secret."""

    GUIDE = ROOT / "docs" / "kubernetes.md"

    def section(self, title: str) -> str:
        text = self.GUIDE.read_text()
        assert f"### {title}" in text, title
        return text.split(f"### {title}", 1)[1].split("\n### ", 1)[0]

    def test_the_guide_s_values_render_lint_strictly_and_validate_against_1_30(self) -> None:
        (block,) = re.findall(r"```yaml\n(.*?)```", self.section("2. The values"), re.S)
        # The placeholders the guide tells the operator to fill in with `openssl rand -hex 32`.
        values = yaml.safe_load(block.replace("<openssl rand -hex 32>", "0" * 64))
        docs = render(values)
        for doc in docs:
            if (doc["apiVersion"], doc["kind"]) not in CRDS:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        assert report["errors"] == []
        assert report["messages"] == []
        control = named(docs, "Deployment", "slipway-control")["spec"]["template"]["spec"]
        (container,) = control["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SLIPWAY_APP_DOMAIN"] == values["ingress"]["appsDomain"]

    def test_the_guide_s_control_secret_holds_only_variables_control_reads(self) -> None:
        secret = self.section("1. The secrets")
        keys = set(re.findall(r"--from-literal=([A-Z0-9_]+)=", secret))
        assert {"SLIPWAY_DATABASE_URL", "SLIPWAY_ADMIN_TOKEN"} <= keys
        assert keys <= read_by(("control",)), sorted(keys - read_by(("control",)))
