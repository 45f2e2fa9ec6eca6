"""The I/O shell of dedicated add-ons on Kubernetes: create, resize, destroy their objects.

``kube_dedicated.py`` says what the objects are; this sends them through
kubernetes-asyncio. Create makes them in order and, when one fails, deletes
what it made, so a failed create leaves nothing; destroy deletes every name
the add-on owns, a missing one being already gone. What the control plane's
Role in the apps' namespace must allow is exactly ``RBAC`` below (the chart's
``slipway-control-addons`` Role).
"""

from __future__ import annotations

import datetime
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from control.addons import Provisioned, Provisioner, ResizableProvisioner
from control.addons.instances import APP_PREFIX
from control.addons.kube_dedicated import (
    KUBE_PLANS,
    Kind,
    KubeAddon,
    KubeAddonSettings,
    Manifest,
    manifests,
    plan_of,
    quantity_bytes,
    stateful_set,
    url,
    volume_claim,
)
from control.addons.kube_tls import server_certificate
from control.errors import AddonError, Unprocessable

log = logging.getLogger(__name__)

#: (apiGroup, resource) -> verbs: what this module calls, and nothing else.
RBAC: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "secrets"): ("create", "delete"),
    ("", "services"): ("create", "delete"),
    ("", "persistentvolumeclaims"): ("create", "patch", "delete"),
    ("apps", "statefulsets"): ("create", "patch", "delete"),
    ("networking.k8s.io", "networkpolicies"): ("create", "delete"),
}

_Call = Callable[..., Awaitable[Any]]


class KubeAddonObjects:
    def __init__(self, api: client.ApiClient, *, settings: KubeAddonSettings) -> None:
        self._core = client.CoreV1Api(api)
        self._apps = client.AppsV1Api(api)
        self._net = client.NetworkingV1Api(api)
        self._settings = settings

    @property
    def settings(self) -> KubeAddonSettings:
        return self._settings

    def _calls(self, kind: str) -> tuple[_Call, _Call]:
        """(create, delete) of a manifest's kind."""
        calls: dict[str, tuple[_Call, _Call]] = {
            "Secret": (
                self._core.create_namespaced_secret,
                self._core.delete_namespaced_secret,
            ),
            "PersistentVolumeClaim": (
                self._core.create_namespaced_persistent_volume_claim,
                self._core.delete_namespaced_persistent_volume_claim,
            ),
            "Service": (
                self._core.create_namespaced_service,
                self._core.delete_namespaced_service,
            ),
            "StatefulSet": (
                self._apps.create_namespaced_stateful_set,
                self._apps.delete_namespaced_stateful_set,
            ),
            "NetworkPolicy": (
                self._net.create_namespaced_network_policy,
                self._net.delete_namespaced_network_policy,
            ),
        }
        return calls[kind]

    async def create(self, addon: KubeAddon) -> None:
        """Every object of ``addon``; AddonError (and nothing left) when one is refused."""
        if addon.kind is Kind.POSTGRES and addon.tls is None:
            raise AddonError(f"postgres add-on {addon.name} needs its server certificate")
        try:
            docs = manifests(addon, self._settings)
        except ValueError as exc:
            raise AddonError(str(exc)) from None
        made: list[Manifest] = []
        namespace = self._settings.namespace
        try:
            for doc in docs:
                create, _ = self._calls(doc["kind"])
                await create(namespace, doc)
                made.append(doc)
        except ApiException as exc:
            await self._delete(reversed(made))
            raise AddonError(
                f"creating {addon.kind} add-on {addon.name}: {doc['kind']} refused "
                f"({exc.status} {exc.reason}); nothing was left behind"
            ) from None
        log.info("kubernetes add-on created", extra={"resource": addon.name, "plan": addon.plan})

    async def resize(self, addon: KubeAddon, plan: str) -> None:
        """Move ``addon`` to ``plan``: the container's resources and the volume's size.

        A volume only grows (Kubernetes refuses to shrink a claim), so a smaller plan's
        storage is refused before anything changes.
        """
        try:
            old, new = plan_of(addon.kind, addon.plan), plan_of(addon.kind, plan)
        except ValueError as exc:
            raise AddonError(str(exc)) from None
        if quantity_bytes(new.storage) < quantity_bytes(old.storage):
            raise Unprocessable(
                f"{plan} has a smaller volume ({new.storage}) than {addon.plan} ({old.storage});"
                " a volume cannot shrink: create a new add-on on the smaller plan, copy the "
                "data, then destroy this one",
                id="volume_cannot_shrink",
            )
        moved = replace(addon, plan=plan)
        namespace = self._settings.namespace
        claim = volume_claim(moved, self._settings)
        sts = stateful_set(moved, self._settings)
        try:
            await self._core.patch_namespaced_persistent_volume_claim(
                claim["metadata"]["name"], namespace, {"spec": claim["spec"]}
            )
            await self._apps.patch_namespaced_stateful_set(
                addon.name, namespace, {"spec": {"template": sts["spec"]["template"]}}
            )
        except ApiException as exc:
            raise AddonError(
                f"resizing {addon.name} to {plan}: {exc.status} {exc.reason}"
            ) from None

    async def destroy(self, addon: KubeAddon) -> None:
        """Delete every object of ``addon`` (its data volume too); idempotent."""
        await self._delete(reversed(manifests(addon, self._settings)))
        log.info("kubernetes add-on destroyed", extra={"resource": addon.name})

    async def _delete(self, docs: Any) -> None:
        for doc in docs:
            _, delete = self._calls(doc["kind"])
            try:
                await delete(doc["metadata"]["name"], self._settings.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise AddonError(
                        f"deleting {doc['kind']} {doc['metadata']['name']}: "
                        f"{exc.status} {exc.reason}"
                    ) from None


class KubeDedicated:
    """One service's dedicated add-ons on Kubernetes, as a provisioner of the control plane.

    The resource is the objects' name (``addon-<12 hex>``); the plan and kind are
    enough to name every object again at destroy.
    """

    def __init__(self, objects: KubeAddonObjects, *, kind: Kind) -> None:
        self._objects = objects
        self._kind = kind
        self.service = kind.value

    @property
    def plans(self) -> Mapping[str, object]:
        return KUBE_PLANS[self._kind]

    async def create_for(self, app: str, plan: str) -> Provisioned:
        if plan not in self.plans:
            raise Unprocessable(
                f"no {self.service} plan {plan!r} (plans: {', '.join(self.plans)})",
                id="plan_not_found",
            )
        name = f"{APP_PREFIX}{secrets.token_hex(6)}"
        tls = None
        if self._kind is Kind.POSTGRES:
            now = datetime.datetime.now(datetime.UTC)
            tls = server_certificate(name, self._objects.settings.namespace, now=now)
        addon = KubeAddon(
            name=name,
            kind=self._kind,
            plan=plan,
            app=app,
            password=secrets.token_urlsafe(24),
            tls=tls,
        )
        await self._objects.create(addon)
        return Provisioned(resource=addon.name, url=url(addon, self._objects.settings))

    async def create(self, plan: str) -> Provisioned:
        raise AddonError(f"a dedicated {self.service} add-on on Kubernetes needs its owning app")

    async def destroy(self, resource: str) -> None:
        # Names depend on the resource and kind only; any plan of the kind names them.
        plan = next(iter(KUBE_PLANS[self._kind]))
        await self._objects.destroy(
            KubeAddon(name=resource, kind=self._kind, plan=plan, app="", password="")
        )

    async def ensure(self, resource: str, *, url: str, plan: str) -> None:
        """The objects persist in the cluster (and the data on its volume): nothing to redo."""

    async def resize(self, resource: str, *, app: str, url: str, plan: str, to: str) -> Provisioned:
        """The StatefulSet's resources and the volume's size become ``to``'s; the Service,
        the Secret and so the URL stay. Unprocessable for a plan with a smaller volume."""
        if to not in self.plans:
            raise Unprocessable(
                f"no {self.service} plan {to!r} (plans: {', '.join(self.plans)})",
                id="plan_not_found",
            )
        addon = KubeAddon(name=resource, kind=self._kind, plan=plan, app=app, password="")
        await self._objects.resize(addon, to)
        log.info("kubernetes add-on resized", extra={"resource": resource, "plan": to})
        return Provisioned(resource=resource, url=url)


class KubeOrShared:
    """One service's plans when dedicated add-ons run on Kubernetes.

    The Kubernetes plans are the dedicated ones and take their names (``postgres:mini``
    is then a StatefulSet of its own, not a role on the shared server); a shared plan
    whose name they do not take (``redis:shared``) stays on the shared server. Add-ons
    made before the switch keep working: resources tell them apart by name
    (``addon-`` is a StatefulSet, anything else a tenant of the shared server).
    """

    def __init__(self, dedicated: KubeDedicated, *, shared: Provisioner | None = None) -> None:
        self._dedicated = dedicated
        self._shared = shared
        self.service = dedicated.service

    @property
    def shared(self) -> Provisioner | None:
        """The shared server's provisioner (its watchdog and backups are about it only)."""
        return self._shared

    @property
    def plans(self) -> Mapping[str, object]:
        # Dedicated first: the first plan is what a bare service name gets.
        dedicated = dict(self._dedicated.plans)
        shared = dict(self._shared.plans) if self._shared is not None else {}
        return {**dedicated, **{k: v for k, v in shared.items() if k not in dedicated}}

    def _shared_for(self, plan: str) -> Provisioner:
        if self._shared is None or plan not in self._shared.plans:
            raise Unprocessable(
                f"no {self.service} plan {plan!r} (plans: {', '.join(self.plans)})",
                id="plan_not_found",
            )
        return self._shared

    async def create_for(self, app: str, plan: str) -> Provisioned:
        if plan in self._dedicated.plans:
            return await self._dedicated.create_for(app, plan)
        return await self._shared_for(plan).create(plan)

    async def create(self, plan: str) -> Provisioned:
        return await self._shared_for(plan).create(plan)

    async def destroy(self, resource: str) -> None:
        if resource.startswith(APP_PREFIX):
            await self._dedicated.destroy(resource)
        elif self._shared is None:
            raise AddonError(
                f"{self.service} add-on {resource} is on a shared server that is not configured"
            )
        else:
            await self._shared.destroy(resource)

    async def ensure(self, resource: str, *, url: str, plan: str) -> None:
        if not resource.startswith(APP_PREFIX) and self._shared is not None:
            await self._shared.ensure(resource, url=url, plan=plan)

    async def resize(self, resource: str, *, app: str, url: str, plan: str, to: str) -> Provisioned:
        """Within the dedicated plans, or within the shared server's; never across."""
        dedicated = resource.startswith(APP_PREFIX)
        if dedicated != (to in self._dedicated.plans):
            where = "a StatefulSet of its own" if to in self._dedicated.plans else "a shared server"
            raise Unprocessable(
                f"{self.service}:{to} is on {where}, this add-on is not: moving it needs a new "
                f"add-on; create one with `slipway addons:create {self.service}:{to} --as OTHER`,"
                " copy the data over, then destroy this one",
                id="plan_change_impossible",
            )
        if dedicated:
            return await self._dedicated.resize(resource, app=app, url=url, plan=plan, to=to)
        shared = self._shared_for(to)
        if not isinstance(shared, ResizableProvisioner):
            raise Unprocessable(
                f"{self.service} plans on the shared server cannot be changed in place",
                id="plan_change_impossible",
            )
        return await shared.resize(resource, app=app, url=url, plan=plan, to=to)
