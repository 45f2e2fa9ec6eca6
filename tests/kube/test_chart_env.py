"""The chart and the code agree on every variable, both ways, per component.

Set => read: a variable the chart sets that its component does not read leaves the pod on a
default (127.0.0.1, a relative SQLite file) without a word. Read => set: a variable a
component reads that the chart never sets must be on a list below, with the reason its
default is right on a cluster. The same holds for Fluent Bit: what its config reads is what
the values file for the upstream fluent-bit chart sets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from agent.kubernetes import settings as kube_settings
from control.settings import build_settings_from_env
from logs.s3 import DEFAULT_REGION, S3Store, region_of
from tests.conftest import free_port
from tests.kube.test_chart import CONTROL, NAMESPACE, ROOT, containers, named, render, values_of
from tests.kube.test_chart import with_required as required

#: Each Deployment of the chart and the packages its process runs.
PACKAGES = {
    "slipway-router": ("router", "kit"),
    "slipway-agent": ("agent", "kit"),
    "slipway-logs": ("logs", "kit"),
    "slipway-exporter-postgres": ("exporters", "kit"),
    "slipway-exporter-redis": ("exporters", "kit"),
    "slipway-control": ("control", "kit"),
}
#: Deployments of images that are not slipway's, with what configures them.
NOT_OURS = {
    "slipway-registry": "the CNCF distribution registry, configured by its REGISTRY_* variables",
}
#: Files of those packages a Deployment never runs: the CLI and `slipway up`.
NOT_SERVED = {
    ROOT / "control" / name
    for name in (
        "client.py",
        "commands.py",
        "commands_apps.py",
        "commands_addons.py",
        "commands_ps.py",
        "up.py",
        "up_command.py",
        "statedir.py",
        "dashboard/cli.py",
    )
}
_LITERAL = re.compile(r"""["']((?:SLIPWAY|AWS)_[A-Z0-9_]+|POD_IP)["']""")

#: Read by a component, never set by the chart, and why that is right.
DEFAULTED: dict[str, dict[str, str]] = {
    "slipway-router": {
        "SLIPWAY_ROUTER_HOST": "0.0.0.0 by default, every address of the pod",
        "SLIPWAY_ROUTER_OPS_HOST": "0.0.0.0 by default",
        "SLIPWAY_ROUTER_WORKERS": "given as --workers in the container's args",
        "SLIPWAY_ROUTER_ROUTES": "a static routes file, for runs without an agent",
        "SLIPWAY_ROUTER_UPSTREAM_TIMEOUT": "the router's own default suits apps",
        "SLIPWAY_ROUTER_UNDERSCORES_IN_HEADERS": "off, as nginx's default; extraEnv keeps them",
        "SLIPWAY_PURE_PYTHON": "the image's compiled router by default; extraEnv to debug",
    },
    "slipway-agent": {
        "SLIPWAY_AGENT_HOST": "0.0.0.0 by default",
        "SLIPWAY_AGENT_ADVERTISE_URL": "built from POD_IP, which the chart sets",
        "SLIPWAY_KUBE_LEASE_DURATION": "client-go's timings",
        "SLIPWAY_KUBE_RENEW_INTERVAL": "client-go's timings",
        "SLIPWAY_KUBE_WATCH_TIMEOUT": "tuning",
        "SLIPWAY_KUBE_BACKOFF_INITIAL": "tuning",
        "SLIPWAY_KUBE_BACKOFF_MAX": "tuning",
        "SLIPWAY_KUBE_APP_PORT": "5000, the port apps are told in $PORT",
        "SLIPWAY_KUBE_KEEP_RELEASES": "tuning",
        "SLIPWAY_KUBE_APP_DRAIN_SECONDS": "5 s covers the agent's slice watch and route push",
        "SLIPWAY_KUBE_APP_STOP_GRACE": "30 s after SIGTERM, Heroku's",
        "SLIPWAY_KUBE_ACTIVITY_INTERVAL": "tuning",
        "SLIPWAY_KUBE_IMAGE_PULL_SECRET": "set only when there is one (agent.imagePullSecret)",
        "SLIPWAY_DYNO_INTERVAL": "20 s, Heroku's sampling; metrics-server refreshes every 15 s",
    },
    "slipway-logs": {
        "SLIPWAY_LOGS_S3_ENDPOINT": "AWS unless a MinIO is named; left to extraEnv",
        "SLIPWAY_LOGS_S3_BUCKET": "set only with an archive bucket",
        "SLIPWAY_LOGS_CONTROL_URL": "set only with the control plane",
        "SLIPWAY_LOGS_ADMIN_TOKEN": "from the archive Secret (envFrom) when wanted",
        "SLIPWAY_LOGS_APP_TOKENS": "from a Secret when wanted; control tokens work without",
        "SLIPWAY_LOGS_TOKENS_FILE": "as SLIPWAY_LOGS_APP_TOKENS",
        "SLIPWAY_LOGS_FLUSH_AGE": "tuning",
        "SLIPWAY_LOGS_HEARTBEAT": "tuning",
        "SLIPWAY_LOGS_URL": "the `slipway logs` client's, not the service's",
        "SLIPWAY_TOKEN": "the `slipway logs` client's",
        "SLIPWAY_APP": "the `slipway logs` client's (-a APP), as every app command's",
        "AWS_REGION": "set only with logs.archive.region; IRSA sets it too",
        "AWS_DEFAULT_REGION": "the SDK's older name, after AWS_REGION",
    },
    "slipway-exporter-postgres": {},
    "slipway-exporter-redis": {},
    "slipway-control": {
        # From control.existingSecret (envFrom), documented in values.yaml:
        "SLIPWAY_DATABASE_URL": "in control.existingSecret",
        "SLIPWAY_DB_URL": "the old name of SLIPWAY_DATABASE_URL, still read",
        "SLIPWAY_ADMIN_TOKEN": "in control.existingSecret",
        "SLIPWAY_ADDON_POSTGRES_DSN": "in control.existingSecret, for postgres add-ons",
        "SLIPWAY_ADDON_REDIS_URL": "in control.existingSecret, for redis add-ons",
        "SLIPWAY_GITHUB_WEBHOOK_SECRET": "in control.existingSecret, for review apps",
        # Postgres backups (docs/backups.md): off unless a bucket is given; extraEnv and
        # the existing Secret carry them until the chart grows a backups section.
        "SLIPWAY_BACKUP_BUCKET": "unset: backups off; in control.existingSecret or extraEnv",
        "SLIPWAY_BACKUP_KEY": "in control.existingSecret when backups are on",
        "SLIPWAY_BACKUP_PREFIX": "pg-backups/ by default",
        # Tenants' sources reach no inward address unless an operator says (docs/builds.md).
        "SLIPWAY_SOURCES_ALLOW": "unset: none inward; extraEnv names an internal git server",
        "SLIPWAY_SOURCES_ALLOW_PRIVATE": "unset: false; extraEnv for a private git network",
        "SLIPWAY_BACKUP_S3_ENDPOINT": "AWS by default; extraEnv for MinIO and the like",
        "SLIPWAY_BACKUP_S3_REGION": "boto3's own lookup by default",
        "SLIPWAY_GITHUB_TOKEN": "in control.existingSecret, for review apps' commit statuses",
        "SLIPWAY_GITHUB_API_URL": "api.github.com; GitHub Enterprise sets it with extraEnv",
        "SLIPWAY_ADDON_POSTGRES_HOST": "with the add-on DSN, in the same Secret",
        "SLIPWAY_ADDON_POSTGRES_PORT": "with the add-on DSN, in the same Secret",
        "SLIPWAY_ADDON_REDIS_HOST": "with the add-on URL, in the same Secret",
        "SLIPWAY_ADDON_REDIS_PORT": "with the add-on URL, in the same Secret",
        "SLIPWAY_REVIEW_DOMAIN": "with the webhook secret",
        "SLIPWAY_REVIEW_PIPELINE": "with the webhook secret",
        "SLIPWAY_REVIEW_STAGING_APP": "with the webhook secret",
        "SLIPWAY_REVIEW_STALE_DAYS": "with the webhook secret",
        "SLIPWAY_ADDON_PREFIX": "slipway_, the default prefix",
        "SLIPWAY_ADDON_KUBECONFIG": "the pod's service account; a kubeconfig only outside a pod",
        "SLIPWAY_RELEASE_TIMEOUT": "tuning",
        "SLIPWAY_MAX_PROCESSES_PER_APP": "10, the ceiling for app tokens; raised with extraEnv",
        "SLIPWAY_MAX_PROCESSES_PER_APP_ADMIN": "100, the admin's ceiling; raised with extraEnv",
        "SLIPWAY_MAX_UPLOAD_BYTES": "500 MiB per upload with an app token; extraEnv",
        "SLIPWAY_MAX_UPLOAD_BYTES_ADMIN": "2 GiB per upload with the admin token; extraEnv",
        "SLIPWAY_EXPORTER_TARGETS_DIR": "files for exporters on one machine; on a cluster "
        "the exporters poll the shared servers",
        "SLIPWAY_EXPORTER_POSTGRES_DSN_ENV": "as SLIPWAY_EXPORTER_TARGETS_DIR",
        "SLIPWAY_EXPORTER_REDIS_DSN_ENV": "as SLIPWAY_EXPORTER_TARGETS_DIR",
        "SLIPWAY_EXPORTER_POSTGRES_DSN": "as SLIPWAY_EXPORTER_TARGETS_DIR",
        "SLIPWAY_BUILD_ROOT": "local builds only; the chart builds with Jobs",
        "SLIPWAY_BUILD_CONCURRENCY": "local builds only",
        "SLIPWAY_BUILD_TIMEOUT": "set only with cluster builds",
        "SLIPWAY_BUILDER": "set only with cluster builds",
        "SLIPWAY_CNB_GIT_IMAGE": "the builder's default git image",
        "SLIPWAY_LOGS_URL": "set only with the logs service",
        "SLIPWAY_CNB_RUN_IMAGE": "set only with control.builds.runImage",
        "SLIPWAY_EXPORTER_POSTGRES_URL": "the dashboard's add-on health from the exporter's "
        "/probe; unset, it reads SLIPWAY_PROMETHEUS_URL (the ServiceMonitor's series); extraEnv",
        "SLIPWAY_EXPORTER_REDIS_URL": "as SLIPWAY_EXPORTER_POSTGRES_URL, for Redis add-ons",
        "SLIPWAY_PROMETHEUS_URL": "the request charts' Prometheus (query_range); none by "
        "default (the charts then say so), set with control.extraEnv",
    },
}
#: What control.existingSecret must hold, as values.yaml tells the operator.
CONTROL_SECRET = ("SLIPWAY_DATABASE_URL", "SLIPWAY_ADMIN_TOKEN")


def read_by(packages: tuple[str, ...]) -> set[str]:
    """Every variable the packages' code names, dynamic prefixes expanded."""
    names: set[str] = set()
    for package in packages:
        for path in set((ROOT / package).rglob("*.py")) - NOT_SERVED:
            text = path.read_text()
            names |= set(_LITERAL.findall(text))
            if path == ROOT / "logs" / "cli.py":
                names |= {f"SLIPWAY_LOGS_{n}" for n in re.findall(r'_env\("([A-Z0-9_]+)"', text)}
            if path == ROOT / "exporters" / "cli.py":
                suffixes = re.findall(r'envvar=f"\{env\}_([A-Z_]+)"', text)
                assert suffixes
                names |= {
                    f"SLIPWAY_EXPORTER_{k}_{s}" for k in ("POSTGRES", "REDIS") for s in suffixes
                }
    if "agent" in packages:
        names |= {f"SLIPWAY_KUBE_{n.upper()}" for n in kube_settings._ENV}
    return names


def exporter_kind(name: str) -> str | None:
    return name.removeprefix("slipway-exporter-").upper() if "exporter" in name else None


#: Builds on the cluster into the chart's own registry (off by default).
IN_CLUSTER_REGISTRY = required({"control": {**CONTROL, "builds": {
    "kubernetes": True, "inClusterRegistry": {"enabled": True},
}}})  # fmt: skip


#: Dedicated add-ons as StatefulSets made by the control plane (off by default).
KUBE_ADDONS = required({"control": {**CONTROL, "addons": {"kubernetes": True}}})
#: Backups as Jobs without dedicated add-ons, from a private registry.
KUBE_BACKUPS = required(
    {
        "control": {**CONTROL, "backups": {"kubernetes": True}},
        "imagePullSecrets": [{"name": "registry"}],
    }
)


def renderings() -> list[list[dict[str, Any]]]:
    """Every way the chart sets variables: defaults, the production-like file, the smallest."""
    return [
        render(values_of("default")),
        render(values_of("full")),
        render(values_of("minimal")),
        render(required({"control": CONTROL})),
        render(IN_CLUSTER_REGISTRY),
        render(KUBE_ADDONS),
        render(KUBE_BACKUPS),
    ]


def set_by_chart() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {name: set() for name in PACKAGES}
    for docs in renderings():
        for name, _, container in containers(docs):
            if name in NOT_OURS:
                continue
            out[name] |= {e["name"] for e in container.get("env", [])}
    return out


class TestBothWays:
    def test_every_variable_the_chart_sets_is_one_its_component_reads(self) -> None:
        for name, variables in set_by_chart().items():
            read = read_by(PACKAGES[name])
            assert variables, name
            assert variables <= read, (name, sorted(variables - read))

    def test_every_variable_a_component_reads_is_set_or_deliberately_defaulted(self) -> None:
        chart = set_by_chart()
        for name, packages in PACKAGES.items():
            read = read_by(packages)
            kind = exporter_kind(name)
            if kind is not None:  # one code path, two prefixes: each exporter reads its own
                other = {"POSTGRES": "REDIS", "REDIS": "POSTGRES"}[kind]
                read = {v for v in read if not v.startswith(f"SLIPWAY_EXPORTER_{other}_")}
                read = {v for v in read if v != "SLIPWAY_EXPORTER_POSTGRES_DSN"}
            unaccounted = read - chart[name] - set(DEFAULTED[name]) - {"SLIPWAY_LOG_LEVEL"}
            if kind is not None:
                tuning = {"INTERVAL", "TIMEOUT", "CONCURRENCY", "MAX_BACKOFF", "LONG_QUERY"}
                tuning |= {"COMMAND_STATS"}
                unaccounted -= {f"SLIPWAY_EXPORTER_{kind}_{t}" for t in tuning}
            assert not unaccounted, (name, sorted(unaccounted))

    def test_the_defaulted_list_names_only_variables_the_code_still_reads(self) -> None:
        for name, defaulted in DEFAULTED.items():
            stale = set(defaulted) - read_by(PACKAGES[name])
            assert not stale, (name, sorted(stale))

    def test_the_control_secret_the_values_ask_for_holds_what_control_reads(self) -> None:
        values_text = (ROOT / "charts" / "slipway" / "values.yaml").read_text()
        for var in CONTROL_SECRET:
            assert var in values_text, var
            assert var in read_by(("control",)), var


class TestTheWiringIssue19Found:
    def test_control_is_told_the_apps_domain_and_where_build_output_streams(self) -> None:
        docs = render(values_of("full"))
        (control,) = [c for name, _, c in containers(docs) if name == "slipway-control"]
        env = {e["name"]: e.get("value") for e in control["env"]}
        assert env["SLIPWAY_APP_DOMAIN"] == "apps.example.org"
        assert env["SLIPWAY_LOGS_URL"] == "https://logs.slipway.example.org"
        assert control["envFrom"] == [{"secretRef": {"name": "slipway-control"}}]
        inside = render(required({"control": CONTROL}))
        (control,) = [c for name, _, c in containers(inside) if name == "slipway-control"]
        env = {e["name"]: e.get("value") for e in control["env"]}
        assert env["SLIPWAY_LOGS_URL"] == f"http://slipway-logs.{NAMESPACE}.svc:8082"

    def test_control_without_its_database_secret_is_refused_saying_what_to_put_in_it(self) -> None:
        with pytest.raises(helm.HelmRenderError, match="SLIPWAY_DATABASE_URL"):
            render(required({"control": {"enabled": True}}))

    def test_app_pods_get_the_registry_pull_secret_of_cluster_builds(self) -> None:
        docs = render(values_of("full"))
        (agent,) = [c for name, _, c in containers(docs) if name == "slipway-agent"]
        env = {e["name"]: e.get("value") for e in agent["env"]}
        assert env["SLIPWAY_KUBE_IMAGE_PULL_SECRET"] == "ghcr"
        given = render(required({"agent": {"imagePullSecret": "apps-pull"}}))
        (agent,) = [c for name, _, c in containers(given) if name == "slipway-agent"]
        assert {"name": "SLIPWAY_KUBE_IMAGE_PULL_SECRET", "value": "apps-pull"} in agent["env"]

    def test_builds_into_the_in_cluster_registry_push_by_service_and_pull_by_localhost(
        self,
    ) -> None:
        """The control container's rendered variables, read by the code that reads them."""
        docs = render(IN_CLUSTER_REGISTRY)
        (control,) = [c for name, _, c in containers(docs) if name == "slipway-control"]
        env = {e["name"]: e["value"] for e in control["env"] if "value" in e}
        settings = build_settings_from_env(env)
        assert settings is not None
        assert settings.cnb is not None
        assert settings.cnb.registry == f"slipway-registry.{NAMESPACE}.svc:5000"
        assert settings.cnb.pull_registry == "localhost:5000"
        assert settings.cnb.insecure_registry is True
        assert settings.cnb.registry_secret is None
        (agent,) = [c for name, _, c in containers(docs) if name == "slipway-agent"]
        assert "SLIPWAY_KUBE_IMAGE_PULL_SECRET" not in {e["name"] for e in agent["env"]}

    def test_the_logs_service_always_gets_the_forward_shared_key_from_a_secret(self) -> None:
        for docs, secret in (
            (render(values_of("full")), "slipway-forward-key"),
            (render(values_of("default")), "slipway-logs-shared-key"),
        ):
            (logs,) = [c for name, _, c in containers(docs) if name == "slipway-logs"]
            (ref,) = [e for e in logs["env"] if e["name"] == "SLIPWAY_LOGS_SHARED_KEY"]
            assert ref["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "key"}
        kept = named(render(values_of("default")), "Secret", "slipway-logs-shared-key")
        assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    def test_the_archive_region_reaches_the_s3_client(self) -> None:
        docs = render(values_of("full"))
        (logs,) = [c for name, _, c in containers(docs) if name == "slipway-logs"]
        assert {"name": "AWS_REGION", "value": "eu-west-1"} in logs["env"]
        assert region_of(None, {"AWS_REGION": "eu-west-1"}) == "eu-west-1"
        assert region_of(None, {"AWS_DEFAULT_REGION": "ap-south-1"}) == "ap-south-1"
        assert region_of("us-west-2", {"AWS_REGION": "eu-west-1"}) == "us-west-2"
        assert region_of(None, {}) == DEFAULT_REGION

    def test_the_s3_store_signs_for_the_pod_s_aws_region(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        store = S3Store(bucket="archive", endpoint_url="http://127.0.0.1:9")
        assert store._client.meta.region_name == "eu-west-1"

    def test_serve_control_opens_the_store_named_by_slipway_database_url(
        self, tmp_path: Path
    ) -> None:
        """The name values.yaml documents is the one `slipway serve control` reads."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        env["SLIPWAY_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/documented.db"
        port = free_port()  # a fixed port collides with a parallel run or a lingering server
        env["SLIPWAY_CONTROL_PORT"] = str(port)
        slipway = str(Path(sys.executable).parent / "slipway")
        proc = subprocess.Popen(
            [slipway, "serve", "control"], env=env, cwd=tmp_path, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                        break
                except OSError:
                    assert proc.poll() is None, "serve control exited"
                    assert time.monotonic() < deadline, "serve control did not become ready"
                    time.sleep(0.2)
            assert (tmp_path / "documented.db").exists()
            assert not (tmp_path / "slipway.db").exists()
        finally:
            proc.terminate()
            proc.wait(timeout=10)


#: The values for the upstream fluent/fluent-bit chart that docs/kubernetes.md installs.
FLUENT_BIT_VALUES = ROOT / "charts" / "fluent-bit-values.yaml"
FLUENT_BIT_CONF = ROOT / "charts" / "slipway" / "files" / "fluent-bit" / "fluent-bit.conf"
#: Set in every container by the runtime itself, not by a chart.
RUNTIME_SET = {"HOSTNAME"}


class TestFluentBit:
    def values(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(FLUENT_BIT_VALUES.read_text())
        return loaded

    def test_what_its_config_reads_is_what_its_values_set_and_nothing_else(self) -> None:
        read = set(re.findall(r"\$\{([A-Z_]+)\}", FLUENT_BIT_CONF.read_text()))
        env = {e["name"] for e in self.values()["env"]}
        assert read - RUNTIME_SET == env
        assert "SLIPWAY_LOGS_PORT" in read

    def test_its_values_point_at_the_rendered_logs_service_port_and_key(self) -> None:
        docs = render(values_of("default"))
        env = {e["name"]: e for e in self.values()["env"]}
        service = named(docs, "Service", "slipway-logs")
        assert env["SLIPWAY_LOGS_HOST"]["value"] == f"slipway-logs.{NAMESPACE}.svc"
        forward = next(p for p in service["spec"]["ports"] if p["name"] == "forward")
        assert env["SLIPWAY_LOGS_PORT"]["value"] == str(forward["port"])
        key = env["SLIPWAY_LOGS_SHARED_KEY"]["valueFrom"]["secretKeyRef"]
        assert key == {"name": "slipway-logs-shared-key", "key": "key"}
        assert named(docs, "Secret", key["name"])["data"][key["key"]]
        assert (
            self.values()["existingConfigMap"]
            == named(docs, "ConfigMap", "slipway-fluent-bit")["metadata"]["name"]
        )

    def test_its_buffer_and_tail_offsets_live_on_the_node(self) -> None:
        """storage.path and the tail DB survive a Fluent Bit restart only on a hostPath."""
        conf = FLUENT_BIT_CONF.read_text()
        state = "/var/fluent-bit/state"
        assert f"storage.path              {state}/" in conf
        assert f"DB                {state}/" in conf
        values = self.values()
        (mount,) = [m for m in values["extraVolumeMounts"] if m["mountPath"] == state]
        (volume,) = [v for v in values["extraVolumes"] if v["name"] == mount["name"]]
        assert volume["hostPath"]["path"].startswith("/var/lib/")
        assert volume["hostPath"]["type"] == "DirectoryOrCreate"
