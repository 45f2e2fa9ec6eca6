"""A dedicated Postgres's server certificate on Kubernetes: generated, self-signed, per add-on.

No I/O and no clock read: ``now`` is passed in (a fresh key is drawn each
call, so a test compares what it parses, not bytes). The control plane puts the pair into the
add-on's Secret at creation (``kube_dedicated.secret``) and the StatefulSet
turns ``ssl`` on with it; the app's URL says ``sslmode=require``: encrypted,
as Heroku's Postgres is, without verifying the name. A certificate of its own
rather than one from a platform CA: nothing has to keep a CA key safe, and an
app that wants ``verify-full`` can be handed the add-on's own certificate as
its root (it is self-signed). No rotation yet: the lifetime is long
(``LIFETIME``), documented in docs/control.md.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: Ten years: an add-on's certificate is replaced by recreating the add-on, not renewed;
#: libpq with ``sslmode=require`` does not check the dates, a verifying client would.
LIFETIME = datetime.timedelta(days=3650)
#: Backdated so a node whose clock runs a little behind the control plane's still accepts it.
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    #: PEM of the self-signed certificate (``tls.crt``).
    cert: str
    #: PEM of its private key, PKCS#8, unencrypted (``tls.key``): PostgreSQL reads it at start.
    key: str = ""

    def __repr__(self) -> str:  # the key never reaches a log line or a traceback
        return "ServerCertificate(cert=..., key=<hidden>)"


def dns_names(name: str, namespace: str) -> list[str]:
    """Every name the add-on's Service answers to inside the cluster."""
    return [
        name,
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.cluster.local",
    ]


def server_certificate(name: str, namespace: str, *, now: datetime.datetime) -> ServerCertificate:
    """A fresh P-256 key and a self-signed certificate for the add-on's Service names."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = dns_names(name, namespace)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[2])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + LIFETIME)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return ServerCertificate(
        cert=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
