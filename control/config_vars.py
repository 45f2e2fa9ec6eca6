"""Config vars: an app's environment; every change is a release (Heroku's config:set)."""

from __future__ import annotations

from collections.abc import Mapping

from control.addons.env import addon_env
from control.errors import Conflict
from control.models import Release
from control.releaser import Releaser
from control.rules import apply_config_changes
from control.store.db import Store


class ConfigVars:
    def __init__(self, *, store: Store, releaser: Releaser) -> None:
        self.store = store
        self.releaser = releaser

    async def config(self, name: str) -> dict[str, str]:
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            release = await tx.current_release(app)
            addons = await tx.list_addons(app)
        return {**release.config, **addon_env(addons, release.config)}

    async def update_config(
        self, name: str, changes: Mapping[str, str | None], *, actor: str
    ) -> tuple[dict[str, str], Release]:
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            owned = {a.config_var: a.name for a in await tx.list_addons(app)}
        for key in changes:
            if key in owned:
                raise Conflict(
                    f"{key} belongs to add-on {owned[key]}; destroy or re-attach it instead",
                    id="addon_config_var",
                )

        def compose(current: Release) -> tuple[str | None, Mapping[str, str], Mapping[str, str]]:
            return current.artifact, current.procfile, apply_config_changes(current.config, changes)

        set_keys = sorted(k for k, v in changes.items() if v is not None)
        unset_keys = sorted(k for k, v in changes.items() if v is None)
        parts = []
        if set_keys:
            parts.append(f"Set {', '.join(set_keys)} config vars")
        if unset_keys:
            parts.append(f"Remove {', '.join(unset_keys)} config vars")
        release = await self.releaser.release(
            app,
            description="; ".join(parts),
            compose=compose,
            actor=actor,
            # Names only: values may be secrets and the audit log is widely read.
            audit={"set": set_keys, "unset": unset_keys},
        )
        return await self.config(app.name), release
