"""Dedicated add-ons on Kubernetes, as manifests: pure functions of (kind, plan, add-on).

One add-on is six objects in the apps' namespace, all named ``addon-<id>``
(the data volume ``addon-<id>-data``, the app-side policy ``addon-<id>-egress``)
and labelled ``slipway.dev/addon=<id>``, so destroying it is deleting those
names and nothing is found by guessing:

- a Secret with the password (the StatefulSet reads it as env, never argv);
- a PersistentVolumeClaim of the plan's size, made on its own rather than by a
  ``volumeClaimTemplate``, because a template's claims outlive the StatefulSet
  and destroy must leave nothing;
- a StatefulSet of one replica, its container's requests and limits the plan's;
- a ClusterIP Service: the stable address the add-on's URL names
  (a pod IP changes at every restart);
- a NetworkPolicy on the add-on's pods admitting only the owning app's pods,
  the exporters of its kind and its backup Jobs, on its one port;
- a NetworkPolicy on the owning app's pods letting them out to it (the apps'
  egress policy in the chart blocks the cluster's private ranges).

The add-on's pods carry no ``slipway.dev/app`` label: the agent's watches
and the routers' policy select on it, and an add-on is no app process.

Postgres speaks TLS: its certificate and key (``kube_tls.py``, one
self-signed pair per add-on) are in the Secret as ``tls.crt``/``tls.key``,
mounted read-only for root, and copied at start into a memory-backed
volume owned by the postgres user with the key at 0600, the one shape
PostgreSQL accepts for a key it does not own as root. An ``fsGroup`` would
make the Secret readable too, but it would also chmod the data volume group-
writable, and PostgreSQL refuses a data directory other than 0700/0750.
The URL the app gets says ``sslmode=require``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from control.addons.kube_tls import ServerCertificate

Manifest = dict[str, Any]

#: Every object of one add-on carries this label with the add-on's id.
ADDON_LABEL = "slipway.dev/addon"
#: The app the add-on belongs to (who may connect).
OWNER_LABEL = "slipway.dev/addon-of"
#: Pods of an app (agent/kubernetes/manifests.py's APP_LABEL): the owner's pods.
APP_LABEL = "slipway.dev/app"
#: Backup Jobs of an add-on label their pods with this and the add-on's id.
BACKUP_LABEL = "slipway.dev/backup-of"
MANAGED_BY = "slipway"
PASSWORD_KEY = "password"
DATA_PATH = "/data"
#: The Secret's keys of a Postgres add-on's certificate and key (kubernetes.io/tls's names).
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
#: Where the Secret's pair is mounted (root only) and where the server reads its copy.
TLS_SECRET_PATH = "/run/secrets/addon-tls"
TLS_PATH = "/run/postgresql-tls"
#: The postgres user of the official image (``postgres:16-alpine``: uid and gid 70).
POSTGRES_USER = "postgres"


class Kind(enum.StrEnum):
    POSTGRES = "postgres"
    REDIS = "redis"
    SEARCH = "search"


@dataclass(frozen=True, slots=True)
class KubePlan:
    #: CPU request and limit (equal: a guaranteed share, no bursting into a neighbour's).
    cpu: str
    #: Memory request and limit; the server's own cap sits below it (Redis's maxmemory,
    #: OpenSearch's heap) so the kernel's OOM killer is never what enforces the plan.
    memory: str
    #: The data volume's size.
    storage: str
    #: What the server itself is told to use, in bytes (maxmemory, heap); 0: its default.
    server_memory_bytes: int = 0


_MI = 1024 * 1024

#: Plans per kind. Sizes follow the one-machine plans' names (plans.py): Redis's
#: maxmemory is the dedicated plan's, with room for Redis's own overhead and the AOF
#: rewrite's fork; OpenSearch's heap is half the memory (the JVM's other half is the
#: page cache Lucene relies on).
KUBE_PLANS: dict[Kind, dict[str, KubePlan]] = {
    Kind.POSTGRES: {
        "mini": KubePlan("250m", "512Mi", "1Gi"),
        "basic": KubePlan("500m", "1Gi", "10Gi"),
        "standard": KubePlan("1", "4Gi", "64Gi"),
    },
    Kind.REDIS: {
        "mini": KubePlan("100m", "64Mi", "1Gi", server_memory_bytes=25 * _MI),
        "basic": KubePlan("250m", "192Mi", "2Gi", server_memory_bytes=100 * _MI),
    },
    Kind.SEARCH: {
        "standard": KubePlan("1", "2Gi", "10Gi", server_memory_bytes=1024 * _MI),
    },
}


@dataclass(frozen=True, slots=True)
class KubeAddonSettings:
    #: Where add-ons run: the apps' namespace, next to the pods that use them.
    namespace: str
    #: The platform's namespace: the exporters and backup Jobs run there.
    platform_namespace: str
    #: Pod labels of the exporter of each kind (the chart's selector labels).
    exporter_labels: Mapping[Kind, Mapping[str, str]] = field(default_factory=dict)
    #: The data volumes' StorageClass; None: the cluster's default class.
    storage_class: str | None = None
    #: Images per kind; pinned by major version, the data format's compatibility line.
    images: Mapping[Kind, str] = field(
        default_factory=lambda: {
            Kind.POSTGRES: "postgres:16-alpine",
            Kind.REDIS: "redis:7-alpine",
            Kind.SEARCH: "opensearchproject/opensearch:2",
        }
    )


@dataclass(frozen=True, slots=True)
class KubeAddon:
    #: ``addon-<12 hex>``: the objects' name.
    name: str
    kind: Kind
    plan: str
    #: The owning app.
    app: str
    password: str
    #: A Postgres add-on's server certificate, put into its Secret at creation; None
    #: where only the objects' names matter (destroy) or for other kinds.
    tls: ServerCertificate | None = None


PORTS = {Kind.POSTGRES: 5432, Kind.REDIS: 6379, Kind.SEARCH: 9200}


_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def quantity_bytes(quantity: str) -> int:
    """Bytes in a plan's binary quantity (``10Gi``); plans only use these suffixes."""
    for suffix, factor in _UNITS.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def plan_of(kind: Kind, plan: str) -> KubePlan:
    """The plan, or ValueError naming the plans there are."""
    plans = KUBE_PLANS[kind]
    if plan not in plans:
        raise ValueError(f"no {kind} plan {plan!r} on Kubernetes (plans: {', '.join(plans)})")
    return plans[plan]


def labels(addon: KubeAddon) -> dict[str, str]:
    return {
        ADDON_LABEL: addon.name,
        OWNER_LABEL: addon.app,
        "app.kubernetes.io/name": addon.name,
        "app.kubernetes.io/component": f"addon-{addon.kind}",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def _meta(addon: KubeAddon, settings: KubeAddonSettings, name: str | None = None) -> Manifest:
    return {"name": name or addon.name, "namespace": settings.namespace, "labels": labels(addon)}


def url(addon: KubeAddon, settings: KubeAddonSettings) -> str:
    """What the app gets: the Service's DNS name, stable across the pod's restarts."""
    host = f"{addon.name}.{settings.namespace}.svc"
    port = PORTS[addon.kind]
    if addon.kind is Kind.POSTGRES:
        return f"postgres://addon:{addon.password}@{host}:{port}/addon?sslmode=require"
    if addon.kind is Kind.REDIS:
        return f"redis://:{addon.password}@{host}:{port}/0"
    return f"http://{host}:{port}"


def secret(addon: KubeAddon, settings: KubeAddonSettings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(addon, settings),
        "type": "Opaque",
        "stringData": {
            PASSWORD_KEY: addon.password,
            **(
                {TLS_CERT_KEY: addon.tls.cert, TLS_KEY_KEY: addon.tls.key}
                if addon.tls is not None
                else {}
            ),
        },
    }


def volume_claim(addon: KubeAddon, settings: KubeAddonSettings) -> Manifest:
    plan = plan_of(addon.kind, addon.plan)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(addon, settings, f"{addon.name}-data"),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": plan.storage}},
            **({"storageClassName": settings.storage_class} if settings.storage_class else {}),
        },
    }


def service(addon: KubeAddon, settings: KubeAddonSettings) -> Manifest:
    port = PORTS[addon.kind]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(addon, settings),
        "spec": {
            "type": "ClusterIP",
            "selector": {ADDON_LABEL: addon.name},
            "ports": [{"name": addon.kind.value, "port": port, "targetPort": port}],
        },
    }


def _password_env(name: str, addon: KubeAddon) -> Manifest:
    return {
        "name": name,
        "valueFrom": {"secretKeyRef": {"name": addon.name, "key": PASSWORD_KEY}},
    }


def _server(addon: KubeAddon, plan: KubePlan) -> Manifest:
    """The container's command and env for its kind (the image's own entrypoint elsewhere)."""
    if addon.kind is Kind.POSTGRES:
        cert, key = f"{TLS_PATH}/{TLS_CERT_KEY}", f"{TLS_PATH}/{TLS_KEY_KEY}"
        line = (
            f"cp {TLS_SECRET_PATH}/{TLS_CERT_KEY} {TLS_SECRET_PATH}/{TLS_KEY_KEY} {TLS_PATH}/ && "
            f"chown {POSTGRES_USER}:{POSTGRES_USER} {cert} {key} && chmod 0600 {key} && "
            "exec docker-entrypoint.sh postgres "
            f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}"
        )
        return {
            # The image's entrypoint still runs (initdb on first start, then drops to postgres).
            "command": ["sh", "-c", line],
            "env": [
                {"name": "POSTGRES_USER", "value": "addon"},
                {"name": "POSTGRES_DB", "value": "addon"},
                _password_env("POSTGRES_PASSWORD", addon),
                # A subdirectory: the volume's root may hold lost+found, which initdb refuses.
                {"name": "PGDATA", "value": f"{DATA_PATH}/pgdata"},
            ],
        }
    if addon.kind is Kind.REDIS:
        line = (
            "printf 'requirepass %s\\n' \"$REDIS_PASSWORD\" | exec redis-server - "
            f"--port {PORTS[Kind.REDIS]} --dir {DATA_PATH} --appendonly yes "
            f"--maxmemory {plan.server_memory_bytes} --maxmemory-policy noeviction"
        )
        return {"command": ["sh", "-c", line], "env": [_password_env("REDIS_PASSWORD", addon)]}
    heap = plan.server_memory_bytes // _MI
    return {
        "env": [
            {"name": "discovery.type", "value": "single-node"},
            {"name": "path.data", "value": DATA_PATH},
            {"name": "OPENSEARCH_JAVA_OPTS", "value": f"-Xms{heap}m -Xmx{heap}m"},
            # The security plugin wants per-cluster certificates; the NetworkPolicy is the
            # fence (only the owner's pods reach it), as under `slipway up` (docs/search.md).
            {"name": "DISABLE_SECURITY_PLUGIN", "value": "true"},
            {"name": "DISABLE_INSTALL_DEMO_CONFIG", "value": "true"},
        ]
    }


def stateful_set(addon: KubeAddon, settings: KubeAddonSettings) -> Manifest:
    plan = plan_of(addon.kind, addon.plan)
    port = PORTS[addon.kind]
    resources = {"cpu": plan.cpu, "memory": plan.memory}
    container: Manifest = {
        "name": addon.kind.value,
        "image": settings.images[addon.kind],
        **_server(addon, plan),
        "ports": [{"name": addon.kind.value, "containerPort": port}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 5},
        "resources": {"requests": resources, "limits": resources},
        "volumeMounts": [{"name": "data", "mountPath": DATA_PATH}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    volumes: list[Manifest] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": f"{addon.name}-data"}}
    ]
    if addon.kind is Kind.POSTGRES:
        container["volumeMounts"] += [
            {"name": "tls-secret", "mountPath": TLS_SECRET_PATH, "readOnly": True},
            {"name": "tls", "mountPath": TLS_PATH},
        ]
        volumes += [
            {
                "name": "tls-secret",
                "secret": {
                    "secretName": addon.name,
                    # The pair only (the password reaches the server as env), root-only.
                    "items": [{"key": k, "path": k} for k in (TLS_CERT_KEY, TLS_KEY_KEY)],
                    "defaultMode": 0o400,
                },
            },
            # In memory: the key's copy never lands on the node's disk.
            {"name": "tls", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(addon, settings),
        "spec": {
            "replicas": 1,
            "serviceName": addon.name,
            "selector": {"matchLabels": {ADDON_LABEL: addon.name}},
            "template": {
                "metadata": {"labels": labels(addon)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def ingress_policy(addon: KubeAddon, settings: KubeAddonSettings) -> Manifest:
    """Into the add-on: the owner's pods, its kind's exporters, its backup Jobs; no one else."""
    platform = {"kubernetes.io/metadata.name": settings.platform_namespace}
    peers: list[Manifest] = [{"podSelector": {"matchLabels": {APP_LABEL: addon.app}}}]
    exporter = settings.exporter_labels.get(addon.kind)
    if exporter:
        peers.append(
            {
                "namespaceSelector": {"matchLabels": platform},
                "podSelector": {"matchLabels": dict(exporter)},
            }
        )
    peers.append(
        {
            "namespaceSelector": {"matchLabels": platform},
            "podSelector": {"matchLabels": {BACKUP_LABEL: addon.name}},
        }
    )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(addon, settings),
        "spec": {
            "podSelector": {"matchLabels": {ADDON_LABEL: addon.name}},
            "policyTypes": ["Ingress", "Egress"],  # and nothing out: a server dials no one
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PORTS[addon.kind]}]}],
        },
    }


def egress_policy(addon: KubeAddon, settings: KubeAddonSettings) -> Manifest:
    """Out of the owner's pods to the add-on (past the chart's block of private ranges)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(addon, settings, f"{addon.name}-egress"),
        "spec": {
            "podSelector": {"matchLabels": {APP_LABEL: addon.app}},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": {ADDON_LABEL: addon.name}}}],
                    "ports": [{"protocol": "TCP", "port": PORTS[addon.kind]}],
                }
            ],
        },
    }


def manifests(addon: KubeAddon, settings: KubeAddonSettings) -> list[Manifest]:
    """Every object of the add-on, in creation order (what the pod needs exists first)."""
    return [
        secret(addon, settings),
        volume_claim(addon, settings),
        ingress_policy(addon, settings),
        egress_policy(addon, settings),
        service(addon, settings),
        stateful_set(addon, settings),
    ]
