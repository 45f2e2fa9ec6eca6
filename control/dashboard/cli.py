"""``slipway login:password``: sign in with a dashboard user's name and password, keep a token.

The token is the user's: an admin's reaches everything, a collaborator's the
apps they are a member of (the same check as the dashboard's). It is saved
where ``slipway login --token`` saves one, so every other command uses it.
"""

from __future__ import annotations

import os

import click

from control.client import DEFAULT_API_URL, Client, login_file
from control.dashboard.html import ROOT


@click.command("login:password")
@click.option("--user", "user", required=True, help="A dashboard user's name.")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    help="Asked for when not given (better than on a command line others can read).",
)
def login_password(user: str, password: str) -> None:
    """Sign in as a dashboard user and save their API token in the login file."""
    sign_in(user, password)


def sign_in(user: str, password: str) -> None:
    """Trade a dashboard user's name and password for their token and save it where
    ``slipway login --token`` saves one (``login:password`` and ``login --user``)."""
    url = os.environ.get("SLIPWAY_API_URL") or DEFAULT_API_URL
    body = (
        Client(base_url=url, token="")
        .call("POST", f"{ROOT}/token", {"user": user, "password": password})
        .body
    )
    path = login_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body["token"] + "\n")
    scope = "every app" if body["admin"] else ", ".join(body["apps"]) or "no app yet"
    click.echo(f"Logged in as {body['user']} ({scope}); token saved to {path}")


def banner(url: str, first_admin_password: str | None) -> None:
    """What `slipway up` prints about the dashboard: its URL, and the first admin's
    password the one time it was made (it is stored only as a hash)."""
    click.echo(f"dashboard: {url}{ROOT}/")
    if first_admin_password is not None:
        click.echo(
            f"dashboard: first admin created: user admin, password {first_admin_password} "
            "(shown once; keep it, or add users from the dashboard's Users page)"
        )


@click.command("users:create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Every app, the Users page.")
@click.option("--app", "apps", multiple=True, help="An app of this collaborator (repeat).")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Asked for when not given (better than on a command line others can read).",
)
def users_create(name: str, admin: bool, apps: tuple[str, ...], password: str) -> None:
    """Add a dashboard user (needs an admin token): an admin, or a collaborator on --app."""
    if admin and apps:
        raise click.UsageError("an admin has every app: give --admin or --app, not both")
    body = {"name": name, "password": password, "admin": admin, "apps": list(apps)}
    made = Client.from_env().call("POST", f"{ROOT}/api/users", body).body
    scope = "every app" if made["admin"] else ", ".join(made["apps"]) or "no app yet"
    click.echo(f"Added {made['name']} ({scope})")
