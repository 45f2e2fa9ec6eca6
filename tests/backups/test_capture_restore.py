"""Capture, list, download, restore (same app and another), encryption at rest, corruption."""

from __future__ import annotations

import base64
import hashlib

import aiohttp
import pytest

from control.backups import crypto, objects, pg
from tests.backups.conftest import SECRET, Env, as_tenant, fill, query
from tests.control.conftest import ADMIN_TOKEN


async def test_a_capture_is_listed_with_size_duration_and_a_verified_status(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db)
    status, body, _ = await env.api.call("POST", "/apps/prod/pg-backups", json={"wait": True})
    assert status == 201, body
    assert body["name"] == "b001"
    assert body["status"] == "succeeded", body["error"]
    assert body["verified_at"] is not None
    assert body["tables"] == 2
    status, listed, _ = await env.api.call("GET", "/apps/prod/pg-backups")
    assert status == 200
    [only] = listed
    assert only["size"] > only["dump_size"] > 1000
    assert only["duration"] is not None
    assert only["duration"] >= 0
    assert any("b001 succeeded and was verified" in line for line in env.lines.of("prod"))


async def test_the_stored_object_is_ciphertext_with_no_plaintext_in_it(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db, marker="SECRET-CUSTOMER-NOTE")
    backup = await env.backups.capture("prod")
    raw = env.s3.get_object(Bucket=env.bucket, Key=backup.object_key)["Body"].read()
    assert raw.startswith(crypto.MAGIC)
    assert b"SECRET-CUSTOMER-NOTE" not in raw
    assert b"PGDMP" not in raw  # pg_dump's custom-format magic
    assert b"customers" not in raw
    assert hashlib.sha256(raw).hexdigest() == backup.object_sha256
    # Another master key cannot open it.
    other = crypto.Decryptor(master=crypto.master_key("another-secret"))
    with pytest.raises(crypto.BackupCorrupt, match="another backup key"):
        other.update(raw)


async def test_download_gives_a_presigned_url_and_this_backups_key(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db)
    await env.backups.capture("prod")
    status, body, _ = await env.api.call("POST", "/apps/prod/pg-backups/latest/actions/download")
    assert status == 200, body
    assert "X-Amz-Signature" in body["url"] or "Signature" in body["url"]
    # Fetched with no credentials at all, as `pg:backups:download` does.
    async with aiohttp.ClientSession() as plain, plain.get(body["url"]) as response:
        assert response.status == 200
        ciphertext = await response.read()
    decryptor = crypto.Decryptor(data_key=base64.b64decode(body["key"]))
    dump = decryptor.update(ciphertext)
    decryptor.finish()
    assert dump.startswith(b"PGDMP")
    assert hashlib.sha256(dump).hexdigest() == body["backup"]["dump_sha256"]


async def test_restore_brings_the_same_apps_data_back(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db, rows=500)
    await env.backups.capture("prod")
    await as_tenant(db, "DELETE FROM orders", "DROP TABLE customers")
    status, body, _ = await env.api.call("POST", "/apps/prod/pg-restores", json={"backup": "b001"})
    assert status == 200, body
    assert await query(db, "SELECT count(*) FROM customers") == [(500,)]
    assert await query(db, "SELECT count(*) FROM orders") == [(1000,)]
    # Restored objects belong to the tenant, who can keep writing to them.
    assert await query(db, "SELECT tableowner FROM pg_tables WHERE tablename = 'customers'") == [
        (db,)
    ]


async def test_production_backup_restores_into_a_review_app(env: Env) -> None:
    prod = await env.app_with_db("prod")
    review = await env.app_with_db("prod-pr-7")
    await fill(prod, rows=300)
    await env.backups.capture("prod")
    status, body, _ = await env.api.call(
        "POST", "/apps/prod-pr-7/pg-restores", json={"source_app": "prod"}
    )
    assert status == 200, body
    assert body["restored"]["name"] == "b001"
    assert await query(review, "SELECT count(*) FROM customers") == [(300,)]
    assert any("Restored prod's b001" in line for line in env.lines.of("prod-pr-7"))


async def test_a_token_for_the_review_app_alone_cannot_restore_production_into_it(
    env: Env,
) -> None:
    prod = await env.app_with_db("prod")
    await env.app_with_db("prod-pr-8")
    await fill(prod, rows=10)
    await env.backups.capture("prod")
    status, minted, _ = await env.api.call(
        "POST", "/tokens", json={"name": "review", "app": "prod-pr-8"}
    )
    assert status == 201
    status, body, _ = await env.api.call(
        "POST", "/apps/prod-pr-8/pg-restores", json={"source_app": "prod"}, token=minted["token"]
    )
    assert status == 403, body
    status, body, _ = await env.api.call("GET", "/apps/prod/pg-backups", token=minted["token"])
    assert status == 403
    assert ADMIN_TOKEN  # the admin could (previous test)


async def test_a_corrupted_object_fails_verification_and_cannot_be_restored(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db)
    backup = await env.backups.capture("prod")
    raw = bytearray(env.s3.get_object(Bucket=env.bucket, Key=backup.object_key)["Body"].read())
    raw[len(raw) // 2] ^= 0x01
    env.s3.put_object(Bucket=env.bucket, Key=backup.object_key, Body=bytes(raw))
    status, body, _ = await env.api.call("POST", "/apps/prod/pg-backups/b001/actions/verify")
    assert status == 200
    assert body["status"] == "failed"
    assert "fails its check" in body["error"]
    assert any("FAILED verification" in line for line in env.lines.of("prod"))
    status, body, _ = await env.api.call("POST", "/apps/prod/pg-restores", json={"backup": "b001"})
    assert status == 409, body


async def test_a_truncated_object_fails_verification(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db)
    backup = await env.backups.capture("prod")
    raw = env.s3.get_object(Bucket=env.bucket, Key=backup.object_key)["Body"].read()
    # Cut at a segment boundary too: only the missing "last" mark tells.
    for cut in (raw[:-100], raw[: crypto.HEADER_SIZE]):
        env.s3.put_object(Bucket=env.bucket, Key=backup.object_key, Body=cut)
        checked = await env.backups.reverify("prod", "b001")
        assert checked.status.value == "failed"
        assert "truncated" in checked.error or "sha256" in checked.error, checked.error


async def test_a_restore_from_a_corrupted_object_leaves_the_target_as_it_was(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db, rows=50)
    backup = await env.backups.capture("prod")
    await as_tenant(db, "DELETE FROM customers WHERE id > 10")
    raw = bytearray(env.s3.get_object(Bucket=env.bucket, Key=backup.object_key)["Body"].read())
    raw[-5] ^= 0xFF
    env.s3.put_object(Bucket=env.bucket, Key=backup.object_key, Body=bytes(raw))
    with pytest.raises(crypto.BackupCorrupt):
        pg.restore(
            objects.read_object(env.s3, env.bucket, backup.object_key),
            admin_dsn=env.backups._admin_dsn,
            database=db,
            master=crypto.master_key(SECRET),
            job=pg.Job(),
            role=db,
        )
    assert await query(db, "SELECT count(*) FROM customers") == [(10,)]


async def test_delete_removes_the_record_and_the_object(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db, rows=10)
    backup = await env.backups.capture("prod")
    status, _, _ = await env.api.call("DELETE", "/apps/prod/pg-backups/b001")
    assert status == 200
    listed = env.s3.list_objects_v2(Bucket=env.bucket).get("Contents", [])
    assert backup.object_key not in [item["Key"] for item in listed]
    status, body, _ = await env.api.call("GET", "/apps/prod/pg-backups/b001")
    assert status == 404, body


async def test_cancel_stops_a_running_capture_and_leaves_no_object(env: Env) -> None:
    db = await env.app_with_db("prod")
    await fill(db, rows=200_000)
    backup = await env.backups.start_capture("prod")
    status, body, _ = await env.api.call("POST", "/apps/prod/pg-backups/running/actions/cancel")
    assert status == 200, body
    assert body["status"] == "cancelled"
    assert backup.name == body["name"]
    listed = env.s3.list_objects_v2(Bucket=env.bucket).get("Contents", [])
    assert backup.object_key not in [item["Key"] for item in listed]
    uploads = env.s3.list_multipart_uploads(Bucket=env.bucket).get("Uploads", [])
    assert uploads == []
