"""TLS for dedicated Postgres on Kubernetes: the generated pair, the objects that carry it,
and a real PostgreSQL serving it to a ``sslmode=require`` (and ``verify-full``) client."""

from __future__ import annotations

import datetime
import shlex
from collections.abc import Iterator

import kubernetes_validate
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes_asyncio import client

from control.addons.kube_dedicated import (
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    TLS_PATH,
    TLS_SECRET_PATH,
    Kind,
    KubeAddon,
    manifests,
    stateful_set,
)
from control.addons.kube_objects import KubeAddonObjects, KubeDedicated
from control.addons.kube_tls import LIFETIME, ServerCertificate, dns_names, server_certificate
from control.errors import AddonError
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE
from tests.kube.test_addon_objects import SETTINGS
from tests.kube.test_chart import KUBE_VERSION
from tests.pgserver import Scratch, postgres, scratch

NOW = datetime.datetime(2026, 12, 6, 9, 0, tzinfo=datetime.UTC)
NAME = "addon-0a1b2c3d4e5f"


def parsed(pair: ServerCertificate) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pair.cert.encode())
    key = serialization.load_pem_private_key(pair.key.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def test_the_pair_parses_matches_and_names_the_service() -> None:
    pair = server_certificate(NAME, NAMESPACE, now=NOW)
    cert, key = parsed(pair)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, public) == (
        cert.public_key().public_bytes(serialization.Encoding.DER, public)
    )
    cert.verify_directly_issued_by(cert)  # self-signed: its own root
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == dns_names(NAME, NAMESPACE)
    assert f"{NAME}.{NAMESPACE}.svc" in dns_names(NAME, NAMESPACE)
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - NOW == LIFETIME
    assert "key=<hidden>" in repr(pair)
    assert pair.key not in repr(pair)
    other = server_certificate(NAME, NAMESPACE, now=NOW)
    assert other.key != pair.key  # a key of its own per add-on


def test_the_secret_holds_the_pair_and_the_server_reads_a_0600_copy() -> None:
    pair = server_certificate(NAME, NAMESPACE, now=NOW)
    addon = KubeAddon(NAME, Kind.POSTGRES, "mini", "shop", "pw", tls=pair)
    docs = {d["kind"]: d for d in manifests(addon, SETTINGS)}
    for doc in docs.values():
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    data = docs["Secret"]["stringData"]
    assert (data[TLS_CERT_KEY], data[TLS_KEY_KEY]) == (pair.cert, pair.key)
    pod = docs["StatefulSet"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = volumes["tls-secret"]["secret"]
    assert secret["secretName"] == NAME
    assert {i["key"] for i in secret["items"]} == {TLS_CERT_KEY, TLS_KEY_KEY}  # no password
    assert secret["defaultMode"] == 0o400
    assert volumes["tls"]["emptyDir"]["medium"] == "Memory"
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls-secret"] == {
        "name": "tls-secret",
        "mountPath": TLS_SECRET_PATH,
        "readOnly": True,
    }
    line = container["command"][2]
    assert f"chmod 0600 {TLS_PATH}/{TLS_KEY_KEY}" in line
    assert f"chown postgres:postgres {TLS_PATH}/{TLS_CERT_KEY} {TLS_PATH}/{TLS_KEY_KEY}" in line
    assert f"-c ssl=on -c ssl_cert_file={TLS_PATH}/{TLS_CERT_KEY}" in line
    assert "fsGroup" not in str(pod)  # it would chmod the data directory out of 0700
    # The StatefulSet does not depend on the pair: a resize rebuilds the same template.
    names_only = KubeAddon(NAME, Kind.POSTGRES, "mini", "shop", "")
    assert stateful_set(names_only, SETTINGS) == docs["StatefulSet"]


async def test_the_control_plane_generates_a_pair_per_postgres_add_on_into_its_secret(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    objects = KubeAddonObjects(api, settings=SETTINGS)
    made = await KubeDedicated(objects, kind=Kind.POSTGRES).create_for("shop", "mini")
    assert made.url.endswith(f"@{made.resource}.{NAMESPACE}.svc:5432/addon?sslmode=require")
    stored = apiserver.get("secrets", NAMESPACE, made.resource)
    assert stored is not None
    pair = ServerCertificate(stored["stringData"][TLS_CERT_KEY], stored["stringData"][TLS_KEY_KEY])
    cert, _ = parsed(pair)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{made.resource}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    redis = await KubeDedicated(objects, kind=Kind.REDIS).create_for("shop", "mini")
    redis_secret = apiserver.get("secrets", NAMESPACE, redis.resource)
    assert redis_secret is not None
    assert set(redis_secret["stringData"]) == {"password"}
    with pytest.raises(AddonError, match="needs its server certificate"):
        await objects.create(KubeAddon("addon-ffffffffffff", Kind.POSTGRES, "mini", "shop", "pw"))


@pytest.fixture
def where() -> Iterator[Scratch]:
    with scratch("kdedic-pgtls") as found:
        yield found


def test_a_real_postgres_serves_the_pair_as_the_statefulset_configures_it(where: Scratch) -> None:
    pair = server_certificate(NAME, NAMESPACE, now=NOW)
    for key, text in ((TLS_CERT_KEY, pair.cert), (TLS_KEY_KEY, pair.key)):
        path = where.base / key
        path.write_text(text)
        path.chmod(0o600)  # as the container's start line leaves the copy
        where.own(path)
    addon = KubeAddon(NAME, Kind.POSTGRES, "mini", "shop", "", tls=pair)
    line = stateful_set(addon, SETTINGS)["spec"]["template"]["spec"]["containers"][0]["command"][2]
    options = shlex.split(line.split("docker-entrypoint.sh postgres ", 1)[1])
    options = [o.replace(TLS_PATH, str(where.base)) for o in options]
    with postgres(where, options=options) as port:
        conninfo = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"
        with psycopg.connect(f"{conninfo} sslmode=require") as conn:
            row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert row.fetchone() == (True,)
        # A verifying client holding the add-on's certificate accepts the Service's name.
        verified = (
            f"hostaddr=127.0.0.1 host={NAME}.{NAMESPACE}.svc port={port} user=postgres "
            f"dbname=postgres sslmode=verify-full sslrootcert={where.base / TLS_CERT_KEY} "
            "connect_timeout=5"
        )
        with psycopg.connect(verified) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
