"""The ``slipway`` command.

Sub-commands load lazily from the package that owns them, so ``slipway logs``
does not import the Kubernetes client and a component's CLI lives beside its
code. Each entry names ``module:attribute`` of a click command.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

#: name -> "module:attribute"; each package registers its commands here.
COMMANDS: dict[str, str] = {
    "serve": "control.serve:serve",
    "apps": "control.commands:apps",
    "apps:create": "control.commands:apps_create",
    "create": "control.commands:apps_create",
    "destroy": "control.commands:apps_destroy",
    "apps:rename": "control.commands:apps_rename",
    "apps:destroy": "control.commands:apps_destroy",
    "apps:info": "control.commands_apps:apps_info",
    "info": "control.commands_apps:apps_info",
    "maintenance": "control.commands_apps:maintenance",
    "maintenance:on": "control.commands_apps:maintenance_on",
    "maintenance:off": "control.commands_apps:maintenance_off",
    "config": "control.commands:config",
    "config:get": "control.commands:config_get",
    "config:set": "control.commands:config_set",
    "config:unset": "control.commands:config_unset",
    "releases": "control.commands:releases",
    "releases:rollback": "control.commands:releases_rollback",
    "rollback": "control.commands:releases_rollback",
    "releases:info": "control.commands_apps:releases_info",
    "releases:output": "control.commands_apps:releases_output",
    "deploy": "control.commands:deploy",
    "ps": "control.commands:ps",
    "ps:scale": "control.commands:ps_scale",
    "ps:restart": "control.commands:ps_restart",
    "restart": "control.commands:ps_restart",
    "scale": "control.commands:ps_scale",
    "ps:stop": "control.commands_ps:ps_stop",
    "ps:idle": "control.commands_ps:ps_idle",
    "ps:queue": "control.commands_ps:ps_queue",
    "run": "control.commands_ps:run",
    "run:detached": "control.commands_ps:run_detached",
    "ps:autoscale": "control.commands_ps:ps_autoscale",
    "ps:autoscale:disable": "control.commands_ps:ps_autoscale_disable",
    "domains": "control.commands:domains",
    "domains:add": "control.commands:domains_add",
    "domains:remove": "control.commands:domains_remove",
    "addons": "control.commands:addons",
    "addons:create": "control.commands:addons_create",
    "addons:destroy": "control.commands:addons_destroy",
    "addons:info": "control.commands_addons:addons_info",
    "addons:plans": "control.commands_addons:addons_plans",
    "addons:upgrade": "control.commands_addons:addons_upgrade",
    "addons:downgrade": "control.commands_addons:addons_downgrade",
    "pg:psql": "control.commands_addons:pg_psql",
    "pg:backups": "control.commands_pg:pg_backups",
    "pg:backups:capture": "control.commands_pg:pg_backups_capture",
    "pg:backups:download": "control.commands_pg:pg_backups_download",
    "pg:backups:restore": "control.commands_pg:pg_backups_restore",
    "pg:backups:cancel": "control.commands_pg:pg_backups_cancel",
    "pg:backups:delete": "control.commands_pg:pg_backups_delete",
    "pg:backups:schedule": "control.commands_pg:pg_backups_schedule",
    "pg:backups:unschedule": "control.commands_pg:pg_backups_unschedule",
    "pg:backups:schedules": "control.commands_pg:pg_backups_schedules",
    # What the control plane's backup Jobs and CronJobs run (docs/kubernetes.md).
    "pg-backups": "control.backups.cli:pg_backups",
    "open": "control.commands:open_app",
    "login": "control.commands:login",
    "login:password": "control.dashboard.cli:login_password",
    "users:create": "control.dashboard.cli:users_create",
    "tokens:create": "control.commands:tokens_create",
    "up": "control.up_command:up",
    "exporter": "exporters.cli:exporter",
    "build": "control.builds.cli:build",
    "builds": "control.commands:builds",
    "builds:create": "control.commands:builds_create",
    "logs": "logs.cli:logs",
}


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module_name, attr = self._lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self._lazy[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="slipway")
def main() -> None:
    """slipway: apps that sleep when idle and wake on the next request."""
