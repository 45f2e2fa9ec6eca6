"""Dedicated add-ons on Kubernetes switched on through ``serve control``'s composition.

The settings come from the variables the chart sets, the API client from a kubeconfig
for kmock and the shim, the control plane is the one ``slipway serve control`` runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from control.addons.kube_dedicated import Kind
from control.addons.kube_objects import KubeOrShared
from control.addons.plans import POSTGRES_PLANS
from control.addons.postgres import PostgresAddons
from control.addons.watchdog import registry_tenants
from control.detached import DetachedTarget
from control.errors import ControlError
from control.provisioning import kube_addons_client
from control.serve_control import serve
from control.server import ControlPlane
from control.settings import AddonServers, ControlSettings, KubeAddons, kube_addons_from_env
from exporters.targets import Kind as ExporterKind
from exporters.targets import Scope, load_targets
from tests.control.conftest import ADMIN_DSN, ADMIN_TOKEN, REDIS_URL, TEST_PREFIX
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE, write_kubeconfig
from tests.kube.test_addon_objects import stored

EXPORTER = "app.kubernetes.io/name=slipway,app.kubernetes.io/component=exporter-postgres"


def chart_env(kubeconfig: Path) -> dict[str, str]:
    """What the chart sets with control.addons.kubernetes on (and a kubeconfig: no pod)."""
    return {
        "SLIPWAY_ADDON_KUBERNETES": "true",
        "SLIPWAY_ADDON_KUBE_NAMESPACE": NAMESPACE,
        "SLIPWAY_ADDON_KUBE_PLATFORM_NAMESPACE": "slipway",
        "SLIPWAY_ADDON_KUBE_EXPORTER_LABELS_POSTGRES": EXPORTER,
        "SLIPWAY_ADDON_KUBE_EXPORTER_LABELS_REDIS": "",
        "SLIPWAY_ADDON_KUBE_STORAGE_CLASS": "fast-ssd",
        "SLIPWAY_ADDON_KUBECONFIG": str(kubeconfig),
    }


@dataclass
class Plane:
    plane: ControlPlane
    session: aiohttp.ClientSession
    targets: Path

    async def call(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        async with self.session.request(
            method,
            f"http://127.0.0.1:{self.plane.port}{path}",
            json=json,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response:
            return response.status, await response.json()


@asynccontextmanager
async def serving(tmp_path: Path, env: Mapping[str, str]) -> AsyncIterator[Plane]:
    """The control plane as ``serve control`` composes it, over the session's shared
    Postgres and Redis, with dedicated add-ons on Kubernetes when ``env`` says so."""
    kube = kube_addons_from_env(env)
    settings = ControlSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path}/state.db",
        port=0,
        bootstrap_admin_token=ADMIN_TOKEN,
        addons=AddonServers(postgres_admin_dsn=ADMIN_DSN, redis_admin_url=REDIS_URL),
        exporter_targets_dir=str(tmp_path / "targets"),
        kube_addons=kube,
    )
    plane = ControlPlane(
        settings,
        target=DetachedTarget(release_timeout=5),
        registry=CollectorRegistry(),
        addon_prefix=TEST_PREFIX,
        kube_api=await kube_addons_client(kube) if kube is not None else None,
    )
    await plane.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield Plane(plane, session, tmp_path / "targets")
    finally:
        await session.close()
        async with plane.control.store.tx() as tx:
            leftovers = await tx.all_addons()
        for addon in leftovers:  # nothing left on the shared servers by a failed test
            await plane.control.provisioners[addon.service].destroy(addon.resource)
        await plane.stop()


async def test_switched_on_dedicated_plans_become_statefulsets_and_shared_ones_stay_shared(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    env = chart_env(write_kubeconfig(apiserver, tmp_path / "kubeconfig"))
    async with serving(tmp_path, env) as running:
        plane = running.plane
        assert {s: type(p) for s, p in plane.control.provisioners.items()} == {
            kind.value: KubeOrShared for kind in Kind
        }
        assert (await running.call("POST", "/apps", {"name": "shop"}))[0] == 201
        status, pg = await running.call("POST", "/apps/shop/addons", {"plan": "postgres:mini"})
        assert status == 201, pg
        (sts,) = apiserver.objects_of("statefulsets")
        resource = sts["metadata"]["name"]
        assert len(stored(apiserver, resource)) == 6
        claim = apiserver.get("persistentvolumeclaims", NAMESPACE, f"{resource}-data")
        assert claim is not None
        assert claim["spec"]["storageClassName"] == "fast-ssd"
        (policy,) = [
            p for p in apiserver.objects_of("networkpolicies") if p["metadata"]["name"] == resource
        ]
        # The exporter the chart runs may connect: its labels, in the platform's namespace.
        assert {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "slipway"}},
            "podSelector": {"matchLabels": dict(p.split("=") for p in EXPORTER.split(","))},
        } in policy["spec"]["ingress"][0]["from"]

        config = (await running.call("GET", "/apps/shop/config-vars"))[1]
        host = f"@{resource}.{NAMESPACE}.svc:5432/addon?sslmode=require"
        assert config["DATABASE_URL"].startswith("postgres://addon:")
        assert config["DATABASE_URL"].endswith(host)
        release = (await running.call("GET", "/apps/shop/releases"))[1][-1]
        assert "DATABASE_URL" in release["config_var_names"]

        # The exporter finds it: a target of its own, polled with its own URL by file.
        (target,) = [
            t
            for t in load_targets(
                running.targets / "postgres-targets.toml", kind=ExporterKind.POSTGRES
            )
            if t.name == pg["name"]
        ]
        assert target.dsn == config["DATABASE_URL"]
        assert (target.scope, target.server) == (Scope.DATABASE, None)
        assert target.limits.size_bytes == 1024**3  # the mini plan's volume
        assert dict(target.labels)["app"] == "shop"

        # The shared server's watchdog still runs, and leaves the dedicated instance alone.
        assert "postgres-watchdog" in plane.tasks.names()
        assert await registry_tenants(plane.control.store, POSTGRES_PLANS)() == {}

        # A shared plan whose name no dedicated plan takes stays on the shared server.
        status, cache = await running.call("POST", "/apps/shop/addons", {"plan": "redis:shared"})
        assert status == 201, cache
        assert len(apiserver.objects_of("statefulsets")) == 1
        status, refused = await running.call("POST", "/apps/shop/addons", {"plan": "search:dev"})
        assert (status, refused["id"]) == (422, "plan_not_found")
        assert "plans: standard" in refused["message"]

        assert (await running.call("DELETE", f"/apps/shop/addons/{pg['name']}"))[0] == 200
        assert stored(apiserver, resource) == []
        names = [
            t.name
            for t in load_targets(
                running.targets / "postgres-targets.toml", kind=ExporterKind.POSTGRES
            )
        ]
        assert pg["name"] not in names
        assert not (running.targets / "dsn" / pg["name"]).exists()
        api = plane.kube_api
        assert api is not None
    assert api.rest_client.pool_manager.closed  # closed with the plane


async def test_switched_off_the_shared_servers_serve_as_before_and_the_cluster_is_untouched(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    async with serving(tmp_path, {}) as running:
        assert running.plane.kube_api is None
        assert isinstance(running.plane.control.provisioners["postgres"], PostgresAddons)
        assert "search" not in running.plane.control.provisioners
        assert (await running.call("POST", "/apps", {"name": "shop"}))[0] == 201
        status, pg = await running.call("POST", "/apps/shop/addons", {"plan": "postgres:mini"})
        assert status == 201, pg
        config = (await running.call("GET", "/apps/shop/config-vars"))[1]
        assert "@127.0.0.1:5432/" in config["DATABASE_URL"]
        assert (await running.call("DELETE", f"/apps/shop/addons/{pg['name']}"))[0] == 200
    assert all(not apiserver.objects_of(p) for p in ("statefulsets", "secrets", "services"))


def test_the_settings_read_what_the_chart_sets(tmp_path: Path) -> None:
    kube = kube_addons_from_env(chart_env(tmp_path / "kubeconfig"))
    assert kube is not None
    assert kube.objects.namespace == NAMESPACE
    assert kube.objects.platform_namespace == "slipway"
    assert kube.objects.storage_class == "fast-ssd"
    assert dict(kube.objects.exporter_labels) == {
        Kind.POSTGRES: {
            "app.kubernetes.io/name": "slipway",
            "app.kubernetes.io/component": "exporter-postgres",
        }
    }
    assert kube_addons_from_env({"SLIPWAY_ADDON_KUBERNETES": "false"}) is None
    plain = kube_addons_from_env({**chart_env(tmp_path), "SLIPWAY_ADDON_KUBE_STORAGE_CLASS": ""})
    assert plain is not None
    assert plain.objects.storage_class is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SLIPWAY_ADDON_KUBERNETES": "yes"}, "must be true or false, not 'yes'"),
        ({"SLIPWAY_ADDON_KUBE_NAMESPACE": ""}, "needs SLIPWAY_ADDON_KUBE_NAMESPACE"),
        ({"SLIPWAY_ADDON_KUBE_PLATFORM_NAMESPACE": ""}, "SLIPWAY_ADDON_KUBE_PLATFORM_NAMESPACE"),
        ({"SLIPWAY_ADDON_KUBE_EXPORTER_LABELS_REDIS": "app"}, "key=value pairs"),
        ({"SLIPWAY_ADDON_KUBE_EXPORTER_LABELS_REDIS": "=x"}, "key=value pairs"),
    ],
)
def test_bad_settings_stop_serve_control_with_what_to_set(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    env = {**chart_env(tmp_path / "kubeconfig"), **change}
    with pytest.raises(ValueError, match=message):
        kube_addons_from_env(env)
    result = CliRunner().invoke(serve, [], env=env)
    assert result.exit_code == 2  # a usage error, before anything starts
    assert message in result.output


async def test_no_usable_credentials_is_a_control_error_saying_what_to_set(
    tmp_path: Path,
) -> None:
    missing = KubeAddons(
        objects=kube_addons_from_env(chart_env(tmp_path)).objects,  # type: ignore[union-attr]
        kubeconfig=str(tmp_path / "absent"),
    )
    with pytest.raises(ControlError, match="set SLIPWAY_ADDON_KUBECONFIG"):
        await kube_addons_client(missing)
    settings = ControlSettings(db_url=f"sqlite+aiosqlite:///{tmp_path}/s.db", kube_addons=missing)
    with pytest.raises(ControlError, match="need an API client"):
        ControlPlane(
            settings, target=DetachedTarget(release_timeout=5), registry=CollectorRegistry()
        )
