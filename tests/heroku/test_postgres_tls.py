"""The Postgres add-on's URL asks for the TLS its server offers, and says when there is none.

The test suite's PostgreSQL speaks TLS (.ci/services gives it a self-signed
certificate), as Heroku's does: an app that requires SSL connects with the
URL as given. A server without TLS is played by a listener that answers
PostgreSQL's SSLRequest with "N", as such a server does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from click.testing import CliRunner

from control.addons.postgres import NO_TLS, PostgresAddons
from control.cli import main
from tests.control.conftest import ADMIN_DSN, ADMIN_TOKEN, TEST_PREFIX, running_api


@pytest.fixture
async def addons() -> AsyncIterator[tuple[PostgresAddons, list[str]]]:
    made: list[str] = []
    provisioner = PostgresAddons(
        admin_dsn=ADMIN_DSN, public_host="127.0.0.1", public_port=5432, prefix=TEST_PREFIX
    )
    yield provisioner, made
    for resource in made:
        await provisioner.destroy(resource)


async def test_the_url_requires_tls_and_an_app_requiring_ssl_connects_over_it(
    addons: tuple[PostgresAddons, list[str]],
) -> None:
    provisioner, made = addons

    provisioned = await provisioner.create("mini")
    made.append(provisioned.resource)

    assert parse_qs(urlsplit(provisioned.url).query) == {"sslmode": ["require"]}
    assert provisioned.message == ""
    # What dj-database-url's ssl_require=True does: sslmode=require on top of the URL.
    async with await psycopg.AsyncConnection.connect(provisioned.url, sslmode="require") as conn:
        row = await (
            await conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        ).fetchone()
    assert row == (True,)


async def _no_tls_server() -> tuple[asyncio.Server, int]:
    """Answers an SSLRequest with "N" (no TLS here) and hangs up on anything else."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readexactly(8)
            if request[4:] == (80877103).to_bytes(4, "big"):  # SSLRequest's code
                writer.write(b"N")
                await writer.drain()
                await reader.read(1)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_server_without_tls_gets_sslmode_prefer_and_the_creation_says_so(
    addons: tuple[PostgresAddons, list[str]],
) -> None:
    _, made = addons
    server, port = await _no_tls_server()
    plain = PostgresAddons(
        admin_dsn=ADMIN_DSN, public_host="127.0.0.1", public_port=port, prefix=TEST_PREFIX
    )
    try:
        provisioned = await plain.create("mini")
    finally:
        server.close()
    made.append(provisioned.resource)

    assert parse_qs(urlsplit(provisioned.url).query) == {"sslmode": ["prefer"]}
    assert provisioned.message == NO_TLS
    assert "offers no TLS" in NO_TLS
    assert "ssl_require=True" in NO_TLS


async def test_addons_create_answers_with_a_provision_message_when_there_is_no_tls(
    tmp_path: Path,
) -> None:
    server, port = await _no_tls_server()
    plain = PostgresAddons(
        admin_dsn=ADMIN_DSN, public_host="127.0.0.1", public_port=port, prefix=TEST_PREFIX
    )
    try:
        async with running_api(
            f"sqlite+aiosqlite:///{tmp_path}/state.db", tmp_path, provisioners={"postgres": plain}
        ) as api:
            assert (await api.call("POST", "/apps", json={"name": "plain"}))[0] == 201
            status, addon, _ = await api.call(
                "POST", "/apps/plain/addons", json={"plan": "postgres"}
            )
            listed = (await api.call("GET", "/apps/plain/addons"))[1]
    finally:
        server.close()

    assert status == 201, addon
    assert addon["provision_message"] == NO_TLS
    # Said once, at creation (as Heroku's provision_message), not on every listing.
    assert "provision_message" not in listed[0]


async def test_addons_create_at_the_cli_prints_the_provision_message(tmp_path: Path) -> None:
    server, port = await _no_tls_server()
    plain = PostgresAddons(
        admin_dsn=ADMIN_DSN, public_host="127.0.0.1", public_port=port, prefix=TEST_PREFIX
    )
    cli = CliRunner(
        env={"SLIPWAY_TOKEN": ADMIN_TOKEN, "SLIPWAY_APP": None, "XDG_CONFIG_HOME": str(tmp_path)}
    )
    try:
        async with running_api(
            f"sqlite+aiosqlite:///{tmp_path}/state.db", tmp_path, provisioners={"postgres": plain}
        ) as api:
            assert (await api.call("POST", "/apps", json={"name": "plain"}))[0] == 201
            # The CLI blocks: it runs in a thread while this loop serves the API.
            result = await asyncio.to_thread(
                cli.invoke,
                main,
                ["addons:create", "postgres", "-a", "plain"],
                env={"SLIPWAY_API_URL": api.base},
            )
    finally:
        server.close()

    assert result.exit_code == 0, result.output
    assert "Creating postgres:" in result.output
    assert NO_TLS in result.output
