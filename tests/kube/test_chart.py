"""charts/slipway rendered and linted by the Helm v4 SDK, every manifest schema-validated."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from agent.apps import load_apps
from agent.autoscaler import Autoscaler
from exporters.targets import Kind, parse_targets

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "slipway"
VALUES = Path(__file__).parent / "values"
KUBE_VERSION = "1.30.0"
NAMESPACE = "slipway"
#: Custom resources kubernetes-validate has no schema for, checked by hand below.
CRDS = {("monitoring.coreos.com/v1", k) for k in ("ServiceMonitor", "PrometheusRule")}
#: The metric names the router and agent export (router/metrics.py, the agent's metrics).
KNOWN_METRICS = {
    "slipway_router_requests_total",
    "slipway_router_request_duration_seconds_bucket",
    "slipway_router_in_flight",
    "slipway_router_wake_duration_seconds_bucket",
    "slipway_agent_apps",
    "slipway_agent_wakes_total",
    "slipway_agent_sleeps_total",
    # Checked against a real monitor's registry in tests/agent/test_dynos.py.
    "slipway_dyno_memory_rss_bytes",
    "slipway_dyno_memory_swap_bytes",
    "slipway_dyno_memory_quota_bytes",
    "slipway_dyno_cpu_seconds_total",
    "slipway_dyno_r14_total",
    "slipway_dyno_r15_total",
    # Checked against a real autoscaler's registry below.
    "slipway_autoscale_desired_replicas",
    "slipway_autoscale_decisions_total",
}


#: What an operator must give on top of the defaults: the shared secrets (a generated one
#: would change on every `helm template`).
REQUIRED: dict[str, Any] = {
    "agent": {"token": "agent-token-" + "a" * 32},
    "logs": {"sharedKey": "forward-key-" + "b" * 32},
}
#: The control plane's Secret (SLIPWAY_DATABASE_URL and the admin token).
CONTROL: dict[str, Any] = {"enabled": True, "existingSecret": "slipway-control"}


def with_required(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` over REQUIRED, one level deep."""
    merged = {k: dict(v) for k, v in REQUIRED.items()}
    for key, value in values.items():
        if isinstance(value, dict) and key in merged:
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def values_of(name: str) -> dict[str, Any]:
    if name == "default":
        return with_required({})
    loaded: dict[str, Any] = yaml.safe_load((VALUES / f"{name}.yaml").read_text())
    return loaded


def render(values: dict[str, Any], chart: Path = CHART) -> list[dict[str, Any]]:
    with helm.Chart.load(str(chart)) as loaded:
        files = loaded.render(values, name="slipway", namespace=NAMESPACE)
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for dep in of_kind(docs, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        for c in pod["containers"]:
            yield dep["metadata"]["name"], pod, c


SCENARIOS = ["default", "minimal", "full"]


@pytest.fixture(params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(values_of(request.param))


# -- lint and schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_chart_lints_clean_in_strict_mode(name: str) -> None:
    report = helm.lint(str(CHART), values_of(name), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert report["messages"] == []


def test_every_manifest_validates_against_the_kubernetes_schemas(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = scenario
    assert docs
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_service_monitors_select_a_rendered_service_port_by_name() -> None:
    docs = render(values_of("full"))
    monitors = of_kind(docs, "ServiceMonitor")
    assert len(monitors) == 6
    services = of_kind(docs, "Service")
    for mon in monitors:
        assert mon["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        selector = mon["spec"]["selector"]["matchLabels"]
        (svc,) = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        ports = {p["name"] for p in svc["spec"]["ports"]}
        for endpoint in mon["spec"]["endpoints"]:
            assert endpoint["port"] in ports
            assert endpoint["path"] == "/metrics"


def test_the_router_exposes_one_ops_port_however_many_workers() -> None:
    docs = render(values_of("full"))  # 8 workers
    ports = {
        p["name"]: p["containerPort"]
        for p in named(docs, "Deployment", "slipway-router")["spec"]["template"]["spec"][
            "containers"
        ][0]["ports"]
    }  # fmt: skip
    assert ports == {"http": 8080, "ops": 9080}  # the workers' are merged there
    monitor = named(docs, "ServiceMonitor", "slipway-router")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["ops"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"router": {"workers": 0}}, "/router/workers"),
        ({"router": {"replicas": "many"}}, "/router/replicas"),
        ({"agent": {"idleAfter": "five minutes"}}, "/agent/idleAfter"),
        ({"ingress": {"appsDomain": "*.apps.example.com"}}, "/ingress/appsDomain"),
        ({"image": {"repository": ""}}, "/image/repository"),
    ],
)
def test_bad_values_are_refused_naming_the_key(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
        render(with_required(values))


# -- RBAC -----------------------------------------------------------------------------------------


def rules_of(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


AGENT_LEAST = {
    *(("apps", "deployments", v) for v in ("get", "list", "watch", "patch")),
    *(("apps", "deployments/scale", v) for v in ("get", "patch", "update")),
    *(("discovery.k8s.io", "endpointslices", v) for v in ("list", "watch")),
    *(("", "pods", v) for v in ("list", "watch")),
    ("metrics.k8s.io", "pods", "list"),
}
LEASES = {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
DEPLOY = {
    *(("apps", "deployments", v) for v in ("create", "update", "delete")),
    *(("", "services", v) for v in ("get", "create", "patch", "delete")),
    # One immutable env Secret per release: created, listed to drop old ones, deleted.
    *(("", "secrets", v) for v in ("create", "list", "delete")),
    # One-off processes (the release phase): a Job watched to its end, then its pod's log.
    *(("batch", "jobs", v) for v in ("create", "list", "watch", "delete")),
    ("", "pods/log", "get"),
}


def assert_control_role(
    docs: list[dict[str, Any]],
    name: str,
    granted: Mapping[tuple[str, str], Iterable[str]],
    *,
    namespace: str | None,
) -> None:
    """Role and RoleBinding ``name`` give the control plane's ServiceAccount exactly
    ``granted`` in ``namespace`` (None: the release's), nothing cluster-wide, and both
    validate; with control's defaults the chart renders no such Role."""
    role = named(docs, "Role", name)
    binding = named(docs, "RoleBinding", name)
    for doc in (role, binding):
        assert doc["metadata"].get("namespace") in (
            (None, NAMESPACE) if namespace is None else (namespace,)
        )
    assert rules_of(role) == {(g, r, verb) for (g, r), verbs in granted.items() for verb in verbs}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "slipway-control", "namespace": NAMESPACE}
    ]
    assert named(docs, "ServiceAccount", "slipway-control")["automountServiceAccountToken"]
    assert of_kind(docs, "ClusterRole") == []
    for doc in (role, binding):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    plain = render(with_required({"control": CONTROL}))
    assert name not in {r["metadata"]["name"] for r in of_kind(plain, "Role")}


def test_the_agent_gets_exactly_the_least_rules_and_nothing_cluster_wide() -> None:
    docs = render(with_required({}))
    assert of_kind(docs, "ClusterRole") == []
    assert of_kind(docs, "ClusterRoleBinding") == []
    assert {r["metadata"]["name"] for r in of_kind(docs, "Role")} == {
        "slipway-agent-apps",
        "slipway-agent-leader",
    }
    assert rules_of(named(docs, "Role", "slipway-agent-apps")) == AGENT_LEAST
    assert rules_of(named(docs, "Role", "slipway-agent-leader")) == LEASES
    for binding in of_kind(docs, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "slipway-agent", "namespace": NAMESPACE}
        ]


def test_deploy_rights_add_only_create_and_delete_of_app_objects_in_the_apps_namespace() -> None:
    docs = render(values_of("full"))
    apps_role = named(docs, "Role", "slipway-agent-apps")
    assert apps_role["metadata"]["namespace"] == "slipway-apps"
    assert rules_of(apps_role) == AGENT_LEAST | DEPLOY
    leader = named(docs, "Role", "slipway-agent-leader")
    assert "namespace" not in leader["metadata"]  # the release namespace, where the agent runs
    assert rules_of(leader) == LEASES


def test_with_the_control_plane_the_agent_may_create_what_it_defines() -> None:
    docs = render(with_required({"control": CONTROL}))
    assert rules_of(named(docs, "Role", "slipway-agent-apps")) == AGENT_LEAST | DEPLOY
    control = named(docs, "Deployment", "slipway-control")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in control["containers"][0]["env"]}
    assert env["SLIPWAY_AGENT_URL"] == "http://slipway-agent:8081"  # the agent Service


def test_only_the_agent_mounts_an_api_token(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = scenario
    for sa in of_kind(docs, "ServiceAccount"):
        # The control plane holds one only to run build Jobs (test_chart_builds.py).
        api_users = {"slipway-agent", "slipway-control"} if name == "full" else {"slipway-agent"}
        expected = None if sa["metadata"]["name"] == "slipway-agent" else False
        if sa["metadata"]["name"] in api_users - {"slipway-agent"}:
            expected = True
        assert sa.get("automountServiceAccountToken") is expected, sa["metadata"]["name"]
    for dep in of_kind(docs, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == dep["metadata"]["name"]
        if dep["metadata"]["name"] not in api_users:
            assert pod["automountServiceAccountToken"] is False


# -- workloads ------------------------------------------------------------------------------------


def test_every_container_is_locked_down_probed_and_has_requests(
    scenario: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = scenario
    seen = 0
    for name, pod, c in containers(docs):
        seen += 1
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert c["resources"]["requests"]["cpu"], name
        assert c["resources"]["requests"]["memory"], name
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], name
    assert seen >= 2


def test_the_components_run_with_their_commands_and_ports() -> None:
    docs = render(values_of("full"))
    by_name = {name: c for name, _, c in containers(docs)}
    assert by_name["slipway-router"]["args"] == ["serve", "router", "--workers", "8"]
    assert {p["containerPort"] for p in by_name["slipway-router"]["ports"]} == {8080, 9080}
    assert by_name["slipway-router"]["readinessProbe"]["httpGet"]["port"] == "ops"
    assert by_name["slipway-agent"]["args"] == ["serve", "agent"]
    assert {p["containerPort"] for p in by_name["slipway-agent"]["ports"]} == {8081}
    assert by_name["slipway-logs"]["args"] == ["serve", "logs"]
    assert {p["containerPort"] for p in by_name["slipway-logs"]["ports"]} == {8082, 24224}
    assert by_name["slipway-exporter-postgres"]["args"] == ["exporter", "postgres"]
    assert by_name["slipway-exporter-postgres"]["ports"][0]["containerPort"] == 9187
    assert by_name["slipway-exporter-redis"]["args"] == ["exporter", "redis"]
    assert by_name["slipway-exporter-redis"]["ports"][0]["containerPort"] == 9121
    assert by_name["slipway-control"]["args"] == ["serve", "control"]
    assert by_name["slipway-control"]["ports"][0]["containerPort"] == 8000
    assert all(c["image"] == "registry.example.com/slipway:1.2.3" for c in by_name.values())
    env = {e["name"]: e for e in by_name["slipway-agent"]["env"]}
    assert env["SLIPWAY_KUBE_NAMESPACE"]["value"] == "slipway-apps"
    assert env["SLIPWAY_KUBE_LEASE_NAME"]["value"] == "slipway-leader"
    assert env["SLIPWAY_KUBE_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["SLIPWAY_AGENT_RUNTIME"]["value"] == "kubernetes"
    # The leader's URL in the Lease is built from it (agent/kubernetes/serve.py).
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert '"POD_IP"' in (ROOT / "agent" / "kubernetes" / "serve.py").read_text()
    router_env = {e["name"]: e.get("value") for e in by_name["slipway-router"]["env"]}
    assert router_env["SLIPWAY_AGENT_URL"] == "http://slipway-agent:8081"


def test_control_is_rendered_only_when_enabled() -> None:
    assert not [d for d in render(with_required({})) if d["metadata"]["name"] == "slipway-control"]
    assert named(render(with_required({"control": CONTROL})), "Deployment", "slipway-control")


def test_exporter_targets_are_a_secret_mounted_read_only() -> None:
    docs = render(values_of("full"))
    redis_targets = named(docs, "Secret", "slipway-exporter-redis-targets")
    assert "redis://127.0.0.1:6379" in redis_targets["stringData"]["targets.toml"]
    assert not [d for d in of_kind(docs, "Secret") if "postgres" in d["metadata"]["name"]]
    pg = named(docs, "Deployment", "slipway-exporter-postgres")["spec"]["template"]["spec"]
    assert {"name": "targets", "secret": {"secretName": "pg-targets"}} in pg["volumes"]
    mount = next(m for m in pg["containers"][0]["volumeMounts"] if m["name"] == "targets")
    assert mount["readOnly"] is True
    assert of_kind(docs, "ConfigMap")
    assert all("targets.toml" not in cm.get("data", {}) for cm in of_kind(docs, "ConfigMap"))


def test_disruption_budgets_keep_a_router_and_a_leader_candidate_up() -> None:
    docs = render(with_required({}))
    assert named(docs, "PodDisruptionBudget", "slipway-router")["spec"]["minAvailable"] == 1
    assert named(docs, "PodDisruptionBudget", "slipway-agent")["spec"]["maxUnavailable"] == 1
    # One replica: a budget would block node drains for ever.
    assert of_kind(render(values_of("minimal")), "PodDisruptionBudget") == []


def test_the_ingress_sends_every_app_host_to_the_router_with_streaming_settings() -> None:
    docs = render(values_of("full"))
    ingress = named(docs, "Ingress", "slipway-router")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "*.apps.example.org"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "slipway-router", "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [
        {"hosts": ["*.apps.example.org"], "secretName": "wildcard-apps-example-org"}
    ]
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert notes["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert notes["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert notes["nginx.ingress.kubernetes.io/proxy-http-version"] == "1.1"
    assert notes["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert of_kind(render(values_of("minimal")), "Ingress") == []


# -- dashboards and Fluent Bit --------------------------------------------------------------------


def test_each_dashboard_file_becomes_a_configmap_for_the_grafana_sidecar() -> None:
    docs = render(with_required({}))
    maps = [cm for cm in of_kind(docs, "ConfigMap") if "dashboard" in cm["metadata"]["name"]]
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(k for cm in maps for k in cm["data"]) == files
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        for text in cm["data"].values():
            assert json.loads(text)["panels"]


def test_the_router_agent_dashboard_queries_only_metrics_that_exist() -> None:
    dash = json.loads((CHART / "dashboards" / "router-agent.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\bslipway_[a-z_0-9]+", e)}
    assert used == KNOWN_METRICS
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in (
        "requests", "latency", "errors", "asleep", "awake", "wakes", "wake duration",
        "dyno memory", "r14", "desired replicas", "decisions by reason",
    ):  # fmt: skip
        assert topic in titles, topic
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    # No two panels overlap on the grid (a new row placed over an old one hides it).
    cells = [
        (x, y)
        for p in dash["panels"]
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))


def test_the_dashboard_s_autoscaling_series_are_what_the_autoscaler_exports() -> None:
    """Names and labels from a real Autoscaler's registry after one decision."""
    registry = CollectorRegistry()
    scaler = Autoscaler(registry)
    scaler.decisions_total.labels(app="shop", process="web", reason="panic").inc()
    samples = {s.name: set(s.labels) for m in registry.collect() for s in m.samples}
    assert samples["slipway_autoscale_decisions_total"] == {"app", "process", "reason"}
    dash = json.loads((CHART / "dashboards" / "router-agent.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    assert "by (app, reason) (increase(slipway_autoscale_decisions_total" in exprs
    # The desired gauge is read at scrape time from the decisions: its labels are declared.
    families = {m.name: m for m in registry.collect()}
    assert "slipway_autoscale_desired_replicas" in families
    assert 'slipway_autoscale_desired_replicas{app=~"$app", process="web"}' in exprs


def test_fluent_bit_files_become_one_configmap_and_none_without_files(tmp_path: Path) -> None:
    chart = tmp_path / "slipway"
    shutil.copytree(CHART, chart)
    shutil.rmtree(chart / "files" / "fluent-bit", ignore_errors=True)
    assert not [
        d for d in render(with_required({}), chart) if d["metadata"]["name"] == "slipway-fluent-bit"
    ]
    (chart / "files" / "fluent-bit").mkdir(parents=True)
    conf = "[OUTPUT]\n    Name forward\n    Host ${SLIPWAY_LOGS_HOST}\n"
    (chart / "files" / "fluent-bit" / "fluent-bit.conf").write_text(conf)
    (chart / "files" / "fluent-bit" / "parsers.conf").write_text("[PARSER]\n    Name cri\n")
    cm = named(render(with_required({}), chart), "ConfigMap", "slipway-fluent-bit")
    assert cm["data"]["fluent-bit.conf"] == conf.rstrip("\n")
    assert set(cm["data"]) == {"fluent-bit.conf", "parsers.conf"}


def test_the_agent_reads_its_apps_file_from_a_configmap_it_can_parse(tmp_path: Path) -> None:
    docs = render(values_of("full"))
    cm = named(docs, "ConfigMap", "slipway-agent-apps")
    (tmp_path / "blog").mkdir()
    (tmp_path / "blog" / "Procfile").write_text("web: python -m http.server $PORT\n")
    apps_file = tmp_path / "apps.toml"
    apps_file.write_text(cm["data"]["apps.toml"])
    assert [app.name for app in load_apps(apps_file)] == ["blog"]
    pod = named(docs, "Deployment", "slipway-agent")["spec"]["template"]["spec"]
    assert {"name": "apps", "configMap": {"name": "slipway-agent-apps"}} in pod["volumes"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["SLIPWAY_APPS"] == "/etc/slipway/apps/apps.toml"
    assert env["SLIPWAY_IDLE_AFTER"] == "5m"
    default = named(render(with_required({})), "Deployment", "slipway-agent")
    default_env = {e["name"] for e in default["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SLIPWAY_APPS" not in default_env


def _code_text() -> str:
    return "\n".join(
        path.read_text()
        for package in ("router", "agent", "logs", "exporters", "control")
        for path in (ROOT / package).rglob("*.py")
    )


def test_servers_in_pods_listen_on_every_address() -> None:
    docs = render(values_of("full"))
    for name, _, container in containers(docs):
        hosts = {
            e["name"]: e.get("value")
            for e in container.get("env", [])
            if e["name"].endswith("_HOST") and e["name"].startswith("SLIPWAY_")
        }
        assert all(value == "0.0.0.0" for value in hosts.values()), (name, hosts)
    logs = {
        e["name"]: e.get("value")
        for _, _, c in containers(docs)
        for e in c.get("env", [])
        if e["name"].startswith("SLIPWAY_LOGS_")
    }
    assert logs["SLIPWAY_LOGS_HTTP_HOST"] == logs["SLIPWAY_LOGS_FORWARD_HOST"] == "0.0.0.0"


def test_inline_exporter_targets_are_the_exporter_s_own_toml() -> None:
    docs = render(values_of("full"))
    text = named(docs, "Secret", "slipway-exporter-redis-targets")["stringData"]["targets.toml"]
    targets = parse_targets(text, kind=Kind.REDIS, environ={}, read_file=lambda p: "")
    assert [t.name for t in targets] == ["cache"]


def _token_refs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: env["valueFrom"]["secretKeyRef"]
        for name, _, container in containers(docs)
        for env in container.get("env", [])
        if env["name"] == "SLIPWAY_AGENT_TOKEN"
    }


def test_the_agent_routers_and_control_share_the_given_agent_token() -> None:
    docs = render(with_required({"control": CONTROL}))
    refs = _token_refs(docs)
    assert set(refs) == {"slipway-agent", "slipway-router", "slipway-control"}
    assert {(r["name"], r["key"]) for r in refs.values()} == {("slipway-agent-token", "token")}
    secret = named(docs, "Secret", "slipway-agent-token")
    assert base64.b64decode(secret["data"]["token"]).decode() == REQUIRED["agent"]["token"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_an_operator_supplied_agent_token_secret_is_used_instead() -> None:
    docs = render(with_required({"agent": {"tokenSecret": "my-token"}}))
    assert {r["name"] for r in _token_refs(docs).values()} == {"my-token"}
    assert not [d for d in of_kind(docs, "Secret") if d["metadata"]["name"].endswith("agent-token")]


def test_the_agent_token_is_the_same_on_every_render() -> None:
    """Under `helm template` (Argo CD, Flux) lookup finds nothing: a generated token would
    differ per render, and pods started at different times would refuse each other."""
    first, second = render(with_required({})), render(with_required({}))
    assert named(first, "Secret", "slipway-agent-token") == named(
        second, "Secret", "slipway-agent-token"
    )


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"logs": {"sharedKey": "k" * 32}}, "agent.token is required"),
        ({"agent": {"token": "t" * 32}}, "logs.sharedKey is required"),
    ],
)
def test_a_missing_shared_secret_is_refused_saying_what_to_set(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(complaint)):
        render(values)
    # Without logs there is no forward key to give.
    render({"agent": {"token": "t" * 32}, "logs": {"enabled": False}})


def test_the_agent_posts_platform_lines_to_the_logs_service_with_the_token_logs_expects() -> None:
    """R14/R15 on Kubernetes: the agent's URL is the logs Service's, and the logs service's
    platform token is the agent's own (the same Secret key); no logs, no URL."""
    docs = render(with_required({}))

    def env(name: str) -> dict[str, Any]:
        pod = named(docs, "Deployment", name)["spec"]["template"]["spec"]
        return {e["name"]: e for e in pod["containers"][0]["env"]}

    agent, logs = env("slipway-agent"), env("slipway-logs")
    assert agent["SLIPWAY_AGENT_LOGS_URL"]["value"] == f"http://slipway-logs.{NAMESPACE}.svc:8082"
    assert (
        logs["SLIPWAY_LOGS_PLATFORM_TOKEN"]["valueFrom"]
        == agent["SLIPWAY_AGENT_TOKEN"]["valueFrom"]
    )
    docs = render(with_required({"logs": {"enabled": False}}))
    assert "SLIPWAY_AGENT_LOGS_URL" not in env("slipway-agent")


def test_the_routers_post_their_lines_to_the_logs_service_with_the_token_logs_expects() -> None:
    """Router lines on Kubernetes: each router gets the logs Service's URL and posts with the
    agent token, the logs service's platform token (the same Secret key); no logs, no URL."""
    for docs in (render(with_required({})), render(values_of("full"))):
        router = {e["name"]: e for e in containers_of(docs, "slipway-router")[0]["env"]}
        logs = {e["name"]: e for e in containers_of(docs, "slipway-logs")[0]["env"]}
        assert router["SLIPWAY_ROUTER_LOGS_URL"]["value"] == (
            f"http://slipway-logs.{NAMESPACE}.svc:8082"
        )
        assert (
            logs["SLIPWAY_LOGS_PLATFORM_TOKEN"]["valueFrom"]
            == router["SLIPWAY_AGENT_TOKEN"]["valueFrom"]
        )
    docs = render(with_required({"logs": {"enabled": False}}))
    (router,) = containers_of(docs, "slipway-router")
    assert "SLIPWAY_ROUTER_LOGS_URL" not in {e["name"] for e in router["env"]}


def containers_of(docs: list[dict[str, Any]], deployment: str) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = named(docs, "Deployment", deployment)["spec"]["template"][
        "spec"
    ]["containers"]
    return containers


def test_a_terminating_router_keeps_serving_until_the_ingress_forgets_it_then_drains() -> None:
    docs = render(values_of("full"))
    pod = named(docs, "Deployment", "slipway-router")["spec"]["template"]["spec"]
    (router,) = pod["containers"]
    pre_stop = router["lifecycle"]["preStop"]["sleep"]["seconds"]
    env = {e["name"]: e.get("value") for e in router["env"]}
    drain = float(env["SLIPWAY_ROUTER_DRAIN_GRACE"].removesuffix("s"))
    assert pre_stop >= 5
    assert drain >= 25
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 5


def test_a_grace_period_shorter_than_the_drain_is_refused() -> None:
    values = with_required({"router": {"terminationGracePeriodSeconds": 30}})
    with pytest.raises(helm.HelmRenderError, match=re.escape("must cover router.preStopSeconds")):
        render(values)
