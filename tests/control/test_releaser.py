"""One releaser owns each app's lock: nothing changes what runs in the middle of a release."""

from __future__ import annotations

import asyncio
from pathlib import Path

from control.models import Formation
from control.releasing import Deployment
from control.requests import Deploy, FormationChange
from control.service import Control
from control.store.db import Store
from tests.control.conftest import Api
from tests.control.targets import RecordingTarget

#: The most any step here may take on a loaded machine.
BOUND = 10.0


class GatedTarget(RecordingTarget):
    """Holds every deploy until ``gate`` opens, and writes down the order of what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.deploying = asyncio.Event()
        self.log: list[str] = []

    async def deploy(self, deployment: Deployment) -> None:
        self.log.append(f"deploy v{deployment.version}")
        self.deploying.set()
        await asyncio.wait_for(self.gate.wait(), BOUND)
        await super().deploy(deployment)
        self.log.append(f"deployed v{deployment.version}")

    async def scale(self, app: str, item: Formation) -> None:
        self.log.append(f"scale {item.type}={item.quantity}")
        await super().scale(app, item)


async def audited(control: Control, action: str) -> None:
    """Until the audit log has ``action``: the change committed, only the runtime's part is left."""
    async with asyncio.timeout(BOUND):
        while not any(
            e.action == action for e in await control.audit(app=None, after=None, limit=50)
        ):
            await asyncio.sleep(0.01)


class TestOneLockPerApp:
    async def test_scaling_waits_for_the_release_in_progress(self, tmp_path: Path) -> None:
        store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
        target = GatedTarget()
        control = Control(store=store, target=target)
        try:
            await control.start()
            await control.create_app("shop", actor="me")
            deploy = Deploy(artifact=str(tmp_path), procfile={"web": "run"})
            await control.deploy("shop", deploy, actor="me", tenant=False)
            target.gate.clear()
            target.deploying.clear()
            target.log.clear()
            release = asyncio.create_task(control.deploy("shop", deploy, actor="me", tenant=False))
            await asyncio.wait_for(target.deploying.wait(), BOUND)
            scale = asyncio.create_task(
                control.update_formation("shop", [FormationChange("web", quantity=0)], actor="me")
            )
            await audited(control, "formation.update")
            await asyncio.sleep(0.05)  # what an unlocked scale needs to reach the runtime
            assert target.log == ["deploy v3"]
            target.gate.set()
            await asyncio.wait_for(release, BOUND)
            await asyncio.wait_for(scale, BOUND)
            assert target.log == ["deploy v3", "deployed v3", "scale web=0"]
        finally:
            target.gate.set()
            await store.close()

    async def test_a_renamed_app_moves_to_its_new_name_in_one_step(self, tmp_path: Path) -> None:
        store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
        target = RecordingTarget()
        control = Control(store=store, target=target)
        try:
            await control.start()
            await control.create_app("shop", actor="me")
            await control.deploy(
                "shop",
                Deploy(artifact=str(tmp_path), procfile={"web": "run"}),
                actor="me",
                tenant=False,
            )
            await control.rename_app("shop", "store", actor="me")
            assert target.forgotten == ["shop"]
            assert [(d.app, d.version) for d in target.deployments] == [("shop", 2), ("store", 2)]
        finally:
            await store.close()


class TestWhatTheAuditRecords:
    async def test_a_formation_change_records_the_fields_it_was_given(
        self, api: Api, tmp_path: Path
    ) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        await api.call(
            "POST",
            "/apps/shop/releases",
            json={"artifact": str(tmp_path), "procfile": {"web": "run"}},
        )
        status, _, _ = await api.call("PATCH", "/apps/shop/formation/web", json={"quantity": 0})
        assert status == 200
        entries = await api.control.audit(app="shop", after=None, limit=50)
        [entry] = [e for e in entries if e.action == "formation.update"]
        assert entry.detail == {"updates": [{"type": "web", "quantity": 0}]}
