"""``pg:backups`` and its sub-commands, Heroku's way (docs/backups.md)."""

from __future__ import annotations

import base64
import hashlib
import time
import urllib.request
from pathlib import Path
from typing import Any

import click

from control.backups.crypto import BackupCorrupt, Decryptor
from control.client import Client, CliError
from control.cliformat import columns
from control.commands import app_option, emit, json_option, need_app, quote

#: How long ``capture`` waits for a backup by default; its status is kept either way.
WAIT = 3600.0
#: Poll interval while waiting: a backup takes seconds at least.
POLL = 1.0
#: Download read size.
CHUNK = 1024 * 1024


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _backups_path(app: str) -> str:
    return f"/apps/{quote(app)}/pg-backups"


@click.command("pg:backups")
@app_option
@json_option
def pg_backups(app: str | None, as_json: bool) -> None:
    """The app's backups: status, size, duration (succeeded means verified by a restore)."""
    name = need_app(app)
    found = Client.from_env().call("GET", _backups_path(name)).body
    if as_json:
        emit(found)
        return
    rows = [["ID", "STARTED", "STATUS", "SIZE", "DURATION", "DATABASE"]]
    for b in reversed(found):
        status = b["status"] + (f" ({b['error']})" if b.get("error") else "")
        duration = "-" if b["duration"] is None else f"{b['duration']:.1f}s"
        rows.append([b["name"], b["started_at"], status, _size(b["size"]), duration, b["addon"]])
    click.echo(f"=== Backups of {name}")
    for line in columns(rows):
        click.echo(line)


def _wait(client: Client, app: str, backup: dict[str, Any], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while backup["status"] in ("running", "verifying"):
        if time.monotonic() > deadline:
            raise CliError(f"{backup['name']} is still {backup['status']}; see it with pg:backups")
        time.sleep(POLL)
        backup = client.call("GET", f"{_backups_path(app)}/{backup['name']}").body
    return backup


@click.command("pg:backups:capture")
@click.argument("database", required=False, default="DATABASE")
@app_option
@click.option("--wait/--no-wait", default=True, help="Wait for capture and verification.")
@json_option
def pg_backups_capture(database: str, app: str | None, wait: bool, as_json: bool) -> None:
    """Back up DATABASE now: dump, upload encrypted, restore into a scratch copy to verify."""
    name = need_app(app)
    client = Client.from_env()
    backup = client.call("POST", _backups_path(name), {"addon": database}).body
    click.echo(f"Starting backup of {backup['addon']}... backup {backup['name']}", err=True)
    if wait:
        backup = _wait(client, name, backup, WAIT)
    if as_json:
        emit(backup)
    elif backup["status"] == "failed":
        raise CliError(f"backup {backup['name']} failed: {backup['error']}")
    else:
        click.echo(f"{backup['name']}: {backup['status']}, {_size(backup['size'])}")


@click.command("pg:backups:download")
@click.argument("backup", required=False, default="latest")
@app_option
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("latest.dump"),
              show_default=True, help="Where the pg_dump file goes.")  # fmt: skip
def pg_backups_download(backup: str, app: str | None, output: Path) -> None:
    """Fetch BACKUP (default: the newest) through its presigned URL; decrypt it here."""
    name = need_app(app)
    answer = Client.from_env().call("POST", f"{_backups_path(name)}/{backup}/actions/download").body
    decryptor = Decryptor(data_key=base64.b64decode(answer["key"]))
    digest = hashlib.sha256()
    partial = output.with_name(output.name + ".part")
    try:
        with urllib.request.urlopen(answer["url"], timeout=60) as reply, partial.open("wb") as out:
            while chunk := reply.read(CHUNK):
                plain = decryptor.update(chunk)
                digest.update(plain)
                out.write(plain)
        decryptor.finish()
    except (BackupCorrupt, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise CliError(f"downloading {answer['backup']['name']} failed: {exc}") from None
    if digest.hexdigest() != answer["backup"]["dump_sha256"]:
        partial.unlink(missing_ok=True)
        raise CliError("the download's sha256 differs from the backup's: try again")
    partial.replace(output)
    click.echo(f"{answer['backup']['name']} -> {output} (pg_restore -d DSN {output})")


@click.command("pg:backups:restore")
@click.argument("backup", required=False)
@click.argument("database", required=False, default="DATABASE")
@app_option
@click.option("--confirm", help="The app's name again: a restore replaces its data.")
def pg_backups_restore(
    backup: str | None, database: str, app: str | None, confirm: str | None
) -> None:
    """Restore BACKUP (b001, or OTHER-APP::b001; default: the newest) into DATABASE."""
    name = need_app(app)
    if confirm != name:
        raise CliError(f"this replaces {name}'s {database} data: add --confirm {name}")
    source, ref = name, backup
    if backup is not None and "::" in backup:
        source, _, rest = backup.partition("::")
        ref = rest or None
    # wait: a control plane that restores as a Job answers once its record settles.
    body: dict[str, Any] = {"source_app": source, "addon": database, "wait": True}
    if ref:
        body["backup"] = ref
    answer = Client.from_env().call("POST", f"/apps/{quote(name)}/pg-restores", body).body
    job = answer.get("restore")
    if job is not None:
        if job["status"] == "cancelled":
            raise CliError(f"the restore {job['name']} was cancelled. {_cancelled_restore(job)}")
        if job["status"] != "succeeded":
            raise CliError(f"the restore {job['status']}: {job['error'] or 'no reason recorded'}")
        click.echo(f"Restored {source}'s {job['backup']} into {name}'s {database}")
        return
    click.echo(f"Restored {source}'s {answer['restored']['name']} into {name}'s {database}")


@click.command("pg:backups:cancel")
@click.argument("backup", required=False, default="running")
@app_option
def pg_backups_cancel(backup: str, app: str | None) -> None:
    """Stop a running backup or restore (b003, r007; default: the newest running)."""
    name = need_app(app)
    found = Client.from_env().call("POST", f"{_backups_path(name)}/{backup}/actions/cancel").body
    click.echo(f"{found['name']}: {found['status']}")
    if found.get("kind") == "restore":
        click.echo(_cancelled_restore(found))


def _cancelled_restore(found: dict[str, Any]) -> str:
    """What a cancel left of the restore ``found``, in ``found['addon']`` (docs/backups.md)."""
    what = f"The restore of {found['source_app']}'s {found['backup']} into {found['addon']}"
    if found["status"] == "succeeded":
        return f"{what} had committed before the cancel reached it: its data is the backup's."
    if found["status"] != "cancelled":
        return f"{what} had ended: {found.get('error') or found['status']}."
    if found.get("error"):  # it had committed before the cancel reached it
        return f"{what}: {found['error']}."
    return (
        f"{what} runs in one transaction: stopped before its COMMIT, it rolled back and "
        f"{found['addon']} keeps the data it had. One that had committed already is not "
        "undone (its record then says so)."
    )


@click.command("pg:backups:delete")
@click.argument("backup")
@app_option
@click.option("--confirm", help="The app's name again: the backup cannot come back.")
def pg_backups_delete(backup: str, app: str | None, confirm: str | None) -> None:
    """Delete BACKUP and its stored object."""
    name = need_app(app)
    if confirm != name:
        raise CliError(f"this deletes {backup} for good: add --confirm {name}")
    Client.from_env().call("DELETE", f"{_backups_path(name)}/{backup}")
    click.echo(f"Deleted {backup}")


@click.command("pg:backups:schedule")
@click.argument("database", required=False, default="DATABASE")
@app_option
@click.option("--at", "at", required=True, help="'HH:MM Zone', e.g. '02:00 Europe/Paris'.")
@click.option("--daily", type=int, default=7, show_default=True, help="Days kept.")
@click.option("--weekly", type=int, default=4, show_default=True, help="Weeks kept.")
def pg_backups_schedule(database: str, app: str | None, at: str, daily: int, weekly: int) -> None:
    """Back up DATABASE every day at --at, keeping --daily days and --weekly weeks."""
    name = need_app(app)
    body = {"addon": database, "at": at, "daily": daily, "weekly": weekly}
    item = Client.from_env().call("PUT", f"/apps/{quote(name)}/pg-backup-schedules", body).body
    click.echo(
        f"Scheduled daily backups of {item['addon']} at {item['at']} "
        f"(keeping {item['daily']} days, {item['weekly']} weeks)"
    )


@click.command("pg:backups:unschedule")
@click.argument("database", required=False, default="DATABASE")
@app_option
def pg_backups_unschedule(database: str, app: str | None) -> None:
    """Stop DATABASE's scheduled backups (the ones taken stay)."""
    name = need_app(app)
    Client.from_env().call("DELETE", f"/apps/{quote(name)}/pg-backup-schedules/{quote(database)}")
    click.echo(f"Stopped scheduled backups of {database}")


@click.command("pg:backups:schedules")
@app_option
def pg_backups_schedules(app: str | None) -> None:
    """Schedules, and each Postgres add-on's backup health (red: stale)."""
    name = need_app(app)
    client = Client.from_env()
    for item in client.call("GET", f"/apps/{quote(name)}/pg-backup-schedules").body:
        click.echo(f"{item['addon']}: daily at {item['at']} ({item['daily']}d/{item['weekly']}w)")
    for health in client.call("GET", f"/apps/{quote(name)}/pg-backup-health").body:
        click.echo(f"{health['addon']}: {health['state']} ({health['reason']})")
