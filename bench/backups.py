"""Backup and restore throughput against plain ``pg_dump | pg_restore``, and peak memory.

On one database filled here (``--mb`` of 1 KiB rows in three tables, with an
index), in the same run:

- peer dump:    ``pg_dump -Fc`` to a local file;
- our capture:  pg.capture (snapshot export, per-table stats in the snapshot,
  pg_dump -Fc, AES-GCM segments, S3 multipart upload to moto's server);
- peer restore: ``pg_restore --single-transaction`` of that file into an empty database;
- our restore:  pg.restore (S3 download, decrypt, pg_restore --single-transaction);
- peer pipe:    ``pg_dump -Fc | pg_restore`` straight, the whole copy.

Throughput is MB of the database's size (pg_database_size) per second, so
the peer and slipway divide the same number. Our capture and restore run in
child processes reporting their peak RSS (VmHWM, counted from exec).

Run: .venv/bin/python bench/backups.py [--mb 1024] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

CHILD = """
import json, sys, time, boto3
from control.backups import crypto, objects, pg
mode, db, url, bucket, key, admin = sys.argv[1:7]
s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id="bench",
                  aws_secret_access_key="bench", region_name="us-east-1")
master = crypto.master_key("bench-secret")
started = time.perf_counter()
if mode.startswith("capture"):
    writer = objects.MultipartWriter(s3, bucket, key)
    done = pg.capture(admin_dsn=admin, database=db, writer=writer, master=master, job=pg.Job(),
                      stats=mode == "capture")
    extra = {"object_mb": done.size / 1e6, "dump_mb": done.dump_size / 1e6}
else:
    pg.restore(objects.read_object(s3, bucket, key), admin_dsn=admin, database=db,
               master=master, job=pg.Job())
    extra = {}
seconds = time.perf_counter() - started
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"seconds": seconds, "rss_mb": int(hwm.split()[1]) / 1024, **extra}))
"""


def psql(sql: str, database: str = "postgres") -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-Atqc", sql],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def dsn(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


def timed(argv: list[str] | str, shell: bool = False) -> float:
    started = time.perf_counter()
    subprocess.run(argv, shell=shell, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def child(mode: str, database: str, moto: str, bucket: str, key: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", CHILD, mode, database, moto, bucket, key, ADMIN_DSN]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="database size to fill, MB")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args()

    tag = secrets.token_hex(3)
    source, peer_db, ours_db, pipe_db = (f"slipway_bench_{n}_{tag}" for n in ("src", "p", "o", "x"))
    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for name in (source, peer_db, ours_db, pipe_db):
            psql(f"CREATE DATABASE {name}")
        rows = args.mb * 1024 // 3
        print(f"filling {args.mb} MB ...", flush=True)
        for table in ("a", "b", "c"):
            psql(f"CREATE TABLE {table} (id int PRIMARY KEY, payload text)", source)
            # 1 KiB of hex digests per row: compresses about 2:1, like real rows.
            psql(
                f"INSERT INTO {table} SELECT i, (SELECT string_agg(md5((i * 32 + j)::text), '')"
                f" FROM generate_series(1, 32) j) FROM generate_series(1, {rows}) i",
                source,
            )
        psql("VACUUM ANALYZE", source)
        size_mb = int(psql(f"SELECT pg_database_size('{source}')")) / 1e6
        s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id="bench",
                          aws_secret_access_key="bench", region_name="us-east-1")  # fmt: skip
        s3.create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as tmp:
            dump = Path(tmp) / "peer.dump"
            peer_dump = timed(["pg_dump", "-Fc", "-f", str(dump), "--dbname", dsn(source)])
            ours_dump = child("capture", source, url, "bench", "b001")
            bare_dump = child("capture-nostats", source, url, "bench", "b002")
            peer_restore = timed(
                ["pg_restore", "--single-transaction", "--no-owner", "-d", dsn(peer_db), str(dump)]
            )
            dump_mb = dump.stat().st_size / 1e6
        ours_restore = child("restore", ours_db, url, "bench", "b001")
        peer_pipe = timed(
            f"pg_dump -Fc --dbname '{dsn(source)}' | pg_restore --single-transaction "
            f"--no-owner -d '{dsn(pipe_db)}'",
            shell=True,
        )
        counts = {
            db: psql("SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM c)", db)
            for db in (source, peer_db, ours_db)
        }
        assert len(set(counts.values())) == 1, counts
    finally:
        moto.terminate()
        moto.wait(10)
        if not args.keep:
            for name in (source, peer_db, ours_db, pipe_db):
                psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def rate(seconds: float) -> float:
        return size_mb / seconds

    def line(what: str, peer: float, ours: dict[str, float], label: str) -> None:
        print(
            f"{what:8} peer {rate(peer):6.1f} MB/s   slipway {label} "
            f"{rate(ours['seconds']):6.1f} MB/s   ratio {peer / ours['seconds']:.2f}   "
            f"peak RSS {ours['rss_mb']:.0f} MB"
        )

    print(f"database {size_mb:.0f} MB, pg_dump -Fc output {dump_mb:.0f} MB")
    line("dump", peer_dump, bare_dump, "capture, no table stats")
    line("dump", peer_dump, ours_dump, "capture with table stats")
    line("restore", peer_restore, ours_restore, "restore")
    both = ours_dump["seconds"] + ours_restore["seconds"]
    print(
        f"copy     peer pg_dump|pg_restore {rate(peer_pipe):6.1f} MB/s   slipway capture+restore "
        f"{rate(both):6.1f} MB/s   ratio {peer_pipe / both:.2f}"
    )


if __name__ == "__main__":
    main()
