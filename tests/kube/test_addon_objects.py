"""Dedicated add-ons' objects through kubernetes-asyncio against kmock and the shim."""

from __future__ import annotations

import datetime
from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes_asyncio import client

from control.addons.kube_dedicated import APP_LABEL, Kind, KubeAddon, KubeAddonSettings, manifests
from control.addons.kube_objects import RBAC, KubeAddonObjects, KubeDedicated, KubeOrShared
from control.addons.kube_tls import server_certificate
from control.errors import AddonError, Unprocessable
from tests.control.conftest import running_api, shared_provisioners
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE as APPS_NAMESPACE
from tests.kube.test_chart import (
    CONTROL,
    KUBE_VERSION,
    NAMESPACE,
    assert_control_role,
    render,
    with_required,
)

NOW = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)
SETTINGS = KubeAddonSettings(namespace=APPS_NAMESPACE, platform_namespace="slipway")
PLURALS = {
    "Secret": "secrets",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Service": "services",
    "StatefulSet": "statefulsets",
    "NetworkPolicy": "networkpolicies",
}


def addon(kind: Kind, plan: str, name: str = "addon-0a1b2c3d4e5f") -> KubeAddon:
    tls = server_certificate(name, APPS_NAMESPACE, now=NOW) if kind is Kind.POSTGRES else None
    return KubeAddon(name=name, kind=kind, plan=plan, app="shop", password="pw-secret", tls=tls)


def stored(apiserver: ApiServer, name: str) -> list[tuple[str, str]]:
    return sorted(
        (kind, obj["metadata"]["name"])
        for kind, plural in PLURALS.items()
        for obj in apiserver.objects_of(plural)
        if obj["metadata"].get("labels", {}).get("slipway.dev/addon") == name
    )


@pytest.mark.parametrize(
    ("kind", "plan"), [(Kind.POSTGRES, "mini"), (Kind.REDIS, "mini"), (Kind.SEARCH, "standard")]
)
async def test_create_makes_every_object_and_destroy_removes_them_all(
    api: client.ApiClient, apiserver: ApiServer, kind: Kind, plan: str
) -> None:
    objects = KubeAddonObjects(api, settings=SETTINGS)
    one, other = addon(kind, plan), addon(kind, plan, name="addon-ffffffffffff")
    await objects.create(one)
    await objects.create(other)
    expected = sorted((d["kind"], d["metadata"]["name"]) for d in manifests(one, SETTINGS))
    assert stored(apiserver, one.name) == expected
    sts = apiserver.get("statefulsets", APPS_NAMESPACE, one.name)
    assert sts is not None
    assert sts["spec"] == manifests(one, SETTINGS)[-1]["spec"]  # as built, through the client
    await objects.destroy(one)
    assert stored(apiserver, one.name) == []
    assert len(stored(apiserver, other.name)) == 6  # the other add-on untouched
    await objects.destroy(one)  # again: already gone is fine


async def test_a_refused_create_leaves_nothing_behind(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    objects = KubeAddonObjects(api, settings=SETTINGS)
    taken = addon(Kind.REDIS, "mini")
    # A Service of that name exists already: the create fails at it, after four objects.
    await apiserver.put("services", {"metadata": {"name": taken.name, "namespace": APPS_NAMESPACE}})
    with pytest.raises(AddonError, match="Service refused \\(409"):
        await objects.create(taken)
    assert stored(apiserver, taken.name) == []
    assert apiserver.get("services", APPS_NAMESPACE, taken.name) is not None  # not ours: kept
    with pytest.raises(AddonError, match="no redis plan 'huge'"):
        await objects.create(addon(Kind.REDIS, "huge"))


async def test_resize_moves_resources_and_grows_the_volume_but_never_shrinks_it(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    objects = KubeAddonObjects(api, settings=SETTINGS)
    small = addon(Kind.POSTGRES, "mini")
    await objects.create(small)
    await objects.resize(small, "basic")
    sts = apiserver.get("statefulsets", APPS_NAMESPACE, small.name)
    claim = apiserver.get("persistentvolumeclaims", APPS_NAMESPACE, f"{small.name}-data")
    assert sts is not None
    assert claim is not None
    resources = sts["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "500m", "memory": "1Gi"}
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    big = addon(Kind.POSTGRES, "basic")
    with pytest.raises(Unprocessable, match="a volume cannot shrink"):
        await objects.resize(big, "mini")
    claim = apiserver.get("persistentvolumeclaims", APPS_NAMESPACE, f"{small.name}-data")
    assert claim is not None
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"


async def test_a_redis_plan_change_rolls_its_pod_onto_the_new_maxmemory_with_its_aof_kept(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    """Unlike ``slipway up`` (CONFIG SET on the running server), the StatefulSet's pod
    template carries the new line, so Kubernetes replaces the pod: its keys come back from
    the append-only file on the same claim. A downgrade is a smaller volume: refused."""
    objects = KubeAddonObjects(api, settings=SETTINGS)
    small = addon(Kind.REDIS, "mini")
    await objects.create(small)
    await objects.resize(small, "basic")
    sts = apiserver.get("statefulsets", APPS_NAMESPACE, small.name)
    assert sts is not None
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    line = container["command"][-1]
    assert f"--maxmemory {100 * 1024 * 1024} " in line
    assert "--appendonly yes" in line
    assert "--dir /data" in line
    assert container["volumeMounts"][0]["mountPath"] == "/data"
    claim = apiserver.get("persistentvolumeclaims", APPS_NAMESPACE, f"{small.name}-data")
    assert claim is not None
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    with pytest.raises(Unprocessable, match="a volume cannot shrink"):
        await objects.resize(addon(Kind.REDIS, "basic"), "mini")


def test_the_rbac_it_needs_is_what_it_calls() -> None:
    """Every resource of the manifests has create and delete, and nothing else is asked."""
    kinds = {d["kind"] for d in manifests(addon(Kind.REDIS, "mini"), SETTINGS)}
    assert {resource for _, resource in RBAC} == {PLURALS[k] for k in kinds}
    assert all({"create", "delete"} <= set(verbs) for verbs in RBAC.values())


def test_the_chart_grants_control_exactly_that_in_the_apps_namespace_and_only_when_asked() -> None:
    values = with_required({"control": {**CONTROL, "addons": {"kubernetes": True}}})
    docs = render(values)
    assert_control_role(docs, "slipway-control-addons", RBAC, namespace=f"{NAMESPACE}-apps")


async def test_the_control_plane_creates_and_destroys_them_for_the_owning_app(
    api: client.ApiClient, apiserver: ApiServer, tmp_path: Path
) -> None:
    """Through the control plane's API: the add-on's objects fence it to the app that asked,
    the app gets the Service's URL in its release, and destroy leaves nothing."""
    search = KubeDedicated(KubeAddonObjects(api, settings=SETTINGS), kind=Kind.SEARCH)
    async with running_api(
        f"sqlite+aiosqlite:///{tmp_path}/state.db", tmp_path, provisioners={"search": search}
    ) as control:
        assert (await control.call("POST", "/apps", json={"name": "shop"}))[0] == 201
        status, addon, _ = await control.call(
            "POST", "/apps/shop/addons", json={"plan": "search:standard"}
        )
        assert status == 201, addon
        resource = apiserver.objects_of("statefulsets")[0]["metadata"]["name"]
        assert len(stored(apiserver, resource)) == 6
        (policy,) = [
            p for p in apiserver.objects_of("networkpolicies") if p["metadata"]["name"] == resource
        ]
        assert policy["spec"]["ingress"][0]["from"][0] == {
            "podSelector": {"matchLabels": {APP_LABEL: "shop"}}
        }
        config = (await control.call("GET", "/apps/shop/config-vars"))[1]
        assert config["ELASTICSEARCH_URL"] == f"http://{resource}.{APPS_NAMESPACE}.svc:9200"
        assert config["OPENSEARCH_URL"] == config["ELASTICSEARCH_URL"]
        release = (await control.call("GET", "/apps/shop/releases"))[1][-1]
        assert {"ELASTICSEARCH_URL", "OPENSEARCH_URL"} <= set(release["config_var_names"])

        status, refused, _ = await control.call(
            "POST", "/apps/shop/addons", json={"plan": "search:dev"}
        )
        assert (status, refused["id"]) == (422, "plan_not_found")
        assert "plans: standard" in refused["message"]

        status, _, _ = await control.call("DELETE", f"/apps/shop/addons/{addon['name']}")
        assert status == 200
        assert stored(apiserver, resource) == []


async def test_the_control_plane_changes_a_plan_in_place_and_refuses_what_cannot_be(
    api: client.ApiClient, apiserver: ApiServer, tmp_path: Path
) -> None:
    """``PATCH /apps/{app}/addons/{addon}``: the StatefulSet's resources and the claim move,
    the URL stays (no release); a shrinking volume and a move onto the shared server are
    422s that leave the objects as they were."""
    objects = KubeAddonObjects(api, settings=SETTINGS)
    provisioners = {
        "postgres": KubeDedicated(objects, kind=Kind.POSTGRES),
        "redis": KubeOrShared(
            KubeDedicated(objects, kind=Kind.REDIS), shared=shared_provisioners()["redis"]
        ),
    }
    async with running_api(
        f"sqlite+aiosqlite:///{tmp_path}/state.db", tmp_path, provisioners=provisioners
    ) as control:
        assert (await control.call("POST", "/apps", json={"name": "shop"}))[0] == 201
        status, cache, _ = await control.call(
            "POST", "/apps/shop/addons", json={"plan": "redis:mini"}
        )
        assert status == 201, cache
        (sts,) = apiserver.objects_of("statefulsets")
        resource = sts["metadata"]["name"]
        config = (await control.call("GET", "/apps/shop/config-vars"))[1]
        releases = (await control.call("GET", "/apps/shop/releases"))[1]

        status, moved, _ = await control.call(
            "PATCH", "/apps/shop/addons/REDIS", json={"plan": "redis:basic"}
        )
        assert status == 200, moved
        assert (moved["plan"]["name"], "release" in moved) == ("redis:basic", False)
        sts = apiserver.get("statefulsets", APPS_NAMESPACE, resource)
        claim = apiserver.get("persistentvolumeclaims", APPS_NAMESPACE, f"{resource}-data")
        assert sts is not None
        assert claim is not None
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        assert container["resources"]["limits"] == {"cpu": "250m", "memory": "192Mi"}
        assert "--maxmemory 104857600" in container["command"][-1]
        assert sts["spec"]["template"]["metadata"]["labels"]["slipway.dev/addon-of"] == "shop"
        assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
        assert (await control.call("GET", "/apps/shop/config-vars"))[1] == config
        assert (await control.call("GET", "/apps/shop/releases"))[1] == releases
        kubernetes_validate.validate(sts, KUBE_VERSION, strict=True)

        status, refused, _ = await control.call(
            "PATCH", "/apps/shop/addons/REDIS", json={"plan": "redis:shared"}
        )
        assert (status, refused["id"]) == (422, "plan_change_impossible")
        assert "slipway addons:create redis:shared --as OTHER" in refused["message"]
        status, refused, _ = await control.call(
            "PATCH", "/apps/shop/addons/REDIS", json={"plan": "mini"}
        )
        assert (status, refused["id"]) == (422, "volume_cannot_shrink")
        assert "a volume cannot shrink" in refused["message"]
        after = apiserver.get("statefulsets", APPS_NAMESPACE, resource)
        assert after is not None
        assert after["spec"] == sts["spec"]
        listed = (await control.call("GET", "/apps/shop/addons"))[1]
        assert [a["plan"]["name"] for a in listed] == ["redis:basic"]

        status, shared, _ = await control.call(
            "POST", "/apps/shop/addons", json={"plan": "redis:shared", "attachment": {"name": "C"}}
        )
        assert status == 201, shared
        status, refused, _ = await control.call(
            "PATCH", "/apps/shop/addons/C", json={"plan": "redis:basic"}
        )
        assert (status, refused["id"]) == (422, "plan_change_impossible")
        assert "is on a StatefulSet of its own, this add-on is not" in refused["message"]
