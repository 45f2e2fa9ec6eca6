"""The exporters' targets of dedicated add-ons on a cluster: a Secret per exporter that the
control plane writes (kmock and the shim) and the exporters' own parser reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_asyncio import client

from control.addons.kube_targets import RBAC, TARGETS_KEY, KubeExporterTargets
from control.errors import AddonError
from control.models import Addon
from exporters.targets import Kind, Limits, Scope, parse_targets
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import write_kubeconfig
from tests.kube.test_addon_composition import chart_env, serving
from tests.kube.test_chart import (
    CONTROL,
    KUBE_VERSION,
    NAMESPACE,
    named,
    of_kind,
    render,
    rules_of,
    with_required,
)

PLATFORM = "slipway"
SECRETS = {"postgres": "pg-addon-targets", "redis": "redis-addon-targets"}
PG_URL = "postgres://addon:pw@addon-0a1b2c3d4e5f.apps.svc:5432/addon?sslmode=require"


def an_addon(name: str, service: str, plan: str, resource: str, url: str) -> Addon:
    return Addon(
        id=name,
        app="shop",
        name=name,
        service=service,
        plan=plan,
        attachment=name.upper().replace("-", "_"),
        url=url,
        resource=resource,
        created_at=0.0,
    )


def targets_in(apiserver: ApiServer, name: str, kind: Kind) -> list[Any]:
    """The stored Secret's file, as the exporter parses it (no files: the DSNs are inline)."""
    stored = apiserver.get("secrets", PLATFORM, name)
    assert stored is not None
    text = stored["stringData"][TARGETS_KEY]

    def no_files(path: str) -> str:
        raise AssertionError(f"a file reference in the Secret: {path}")

    return parse_targets(text, kind=kind, environ={}, read_file=no_files)


async def test_each_dedicated_instance_is_a_target_and_shared_tenants_are_not(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    writer = KubeExporterTargets(api, namespace=PLATFORM, secrets=SECRETS)
    await writer([])  # at start, before any add-on: created, empty
    assert targets_in(apiserver, "pg-addon-targets", Kind.POSTGRES) == []
    assert targets_in(apiserver, "redis-addon-targets", Kind.REDIS) == []

    addons = [
        an_addon("postgres-1a2b", "postgres", "basic", "addon-0a1b2c3d4e5f", PG_URL),
        an_addon("postgres-shared", "postgres", "mini", "slipway_0011", "postgres://x@h/db"),
        an_addon(
            "redis-3c4d", "redis", "mini", "addon-ffffffffffff", "redis://:pw@addon-f.apps.svc/0"
        ),
        an_addon("redis-shared", "redis", "shared", "slipway_0022", "redis://u:p@h:6379/0"),
    ]
    await writer(addons)  # replaced in place
    (pg,) = targets_in(apiserver, "pg-addon-targets", Kind.POSTGRES)
    assert (pg.name, pg.dsn, pg.scope, pg.server) == ("postgres-1a2b", PG_URL, Scope.DATABASE, None)
    assert dict(pg.labels) == {"app": "shop", "plan": "basic", "addon": "postgres-1a2b"}
    assert pg.limits == Limits(size_bytes=10 * 1024**3)  # the basic plan's volume
    (redis,) = targets_in(apiserver, "redis-addon-targets", Kind.REDIS)
    assert (redis.name, redis.dsn) == ("redis-3c4d", "redis://:pw@addon-f.apps.svc/0")
    assert redis.limits == Limits(memory_bytes=25 * 1024 * 1024)
    stored = apiserver.get("secrets", PLATFORM, "pg-addon-targets")
    assert stored is not None
    assert stored["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "slipway"
    kubernetes_validate.validate(stored, KUBE_VERSION, strict=True)

    await writer(addons[1:])  # the dedicated Postgres destroyed
    assert targets_in(apiserver, "pg-addon-targets", Kind.POSTGRES) == []


async def test_an_unreachable_api_is_an_addon_error(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    writer = KubeExporterTargets(api, namespace=PLATFORM, secrets=SECRETS)
    apiserver.outage = True
    with pytest.raises(AddonError, match="pg-addon-targets: 503"):
        await writer([])


async def test_the_control_plane_keeps_them_in_step_through_create_resize_and_destroy(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    env = chart_env(write_kubeconfig(apiserver, tmp_path / "kubeconfig"))
    env["SLIPWAY_ADDON_KUBE_EXPORTER_SECRET_POSTGRES"] = "pg-addon-targets"
    async with serving(tmp_path, env) as running:
        # Written at start: the exporter's optional mount fills before the first add-on.
        assert targets_in(apiserver, "pg-addon-targets", Kind.POSTGRES) == []
        assert apiserver.get("secrets", PLATFORM, "redis-addon-targets") is None  # not asked
        assert (await running.call("POST", "/apps", {"name": "shop"}))[0] == 201
        status, pg = await running.call("POST", "/apps/shop/addons", {"plan": "postgres:mini"})
        assert status == 201, pg
        config = (await running.call("GET", "/apps/shop/config-vars"))[1]
        (target,) = targets_in(apiserver, "pg-addon-targets", Kind.POSTGRES)
        assert (target.name, target.dsn) == (pg["name"], config["DATABASE_URL"])
        assert target.limits.size_bytes == 1024**3

        status, _ = await running.call(
            "PATCH", f"/apps/shop/addons/{pg['name']}", {"plan": "standard"}
        )
        assert status == 200
        (target,) = targets_in(apiserver, "pg-addon-targets", Kind.POSTGRES)
        assert target.limits.size_bytes == 64 * 1024**3
        assert dict(target.labels)["plan"] == "standard"

        assert (await running.call("DELETE", f"/apps/shop/addons/{pg['name']}"))[0] == 200
        assert targets_in(apiserver, "pg-addon-targets", Kind.POSTGRES) == []


def test_the_chart_wires_the_secrets_between_control_and_the_exporters() -> None:
    docs = render(with_required({"control": {**CONTROL, "addons": {"kubernetes": True}}}))
    control = named(docs, "Deployment", "slipway-control")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in control["containers"][0]["env"]}
    for kind in ("postgres", "redis"):
        secret = f"slipway-exporter-{kind}-addon-targets"
        assert env[f"SLIPWAY_ADDON_KUBE_EXPORTER_SECRET_{kind.upper()}"] == secret
        pod = named(docs, "Deployment", f"slipway-exporter-{kind}")["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "addon-targets")
        assert volume["secret"] == {"secretName": secret, "optional": True}
        (container,) = pod["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "addon-targets")
        assert mount["readOnly"] is True
        exporter_env = {e["name"]: e.get("value") for e in container["env"]}
        assert exporter_env[f"SLIPWAY_EXPORTER_{kind.upper()}_ADDON_TARGETS"] == (
            f"{mount['mountPath']}/{TARGETS_KEY}"
        )
    role = named(docs, "Role", "slipway-control-exporter-targets")
    assert role["metadata"].get("namespace", NAMESPACE) == NAMESPACE
    assert rules_of(role) == {(g, r, v) for (g, r), verbs in RBAC.items() for v in verbs}
    # Update only the two Secrets by name (create cannot be narrowed by name).
    (update,) = [rule for rule in role["rules"] if rule["verbs"] == ["update"]]
    assert update["resourceNames"] == [
        "slipway-exporter-postgres-addon-targets",
        "slipway-exporter-redis-addon-targets",
    ]
    binding = named(docs, "RoleBinding", "slipway-control-exporter-targets")
    assert binding["subjects"][0]["name"] == "slipway-control"
    for doc in (role, binding):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)

    # One exporter off: its Secret is neither named to control nor granted.
    one = render(
        with_required(
            {
                "control": {**CONTROL, "addons": {"kubernetes": True}},
                "exporters": {"redis": {"enabled": False}},
            }
        )
    )
    role = named(one, "Role", "slipway-control-exporter-targets")
    (update,) = [rule for rule in role["rules"] if rule["verbs"] == ["update"]]
    assert update["resourceNames"] == ["slipway-exporter-postgres-addon-targets"]
    control = named(one, "Deployment", "slipway-control")["spec"]["template"]["spec"]
    names = {e["name"] for e in control["containers"][0]["env"]}
    assert "SLIPWAY_ADDON_KUBE_EXPORTER_SECRET_REDIS" not in names

    # Switched off: no Role, no mount.
    plain = render(with_required({"control": CONTROL}))
    assert not [r for r in of_kind(plain, "Role") if "exporter-targets" in r["metadata"]["name"]]
    pod = named(plain, "Deployment", "slipway-exporter-postgres")["spec"]["template"]["spec"]
    assert "addon-targets" not in {v["name"] for v in pod["volumes"]}
