"""A CA and serving certificates for the webhook, made with ``cryptography``.

Used by the ``certs`` command (for kind, tests and Secrets) and, only when no
certificate is given, by ``serve`` for a local development pair.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY = "ca.crt", "ca.key"
TLS_CERT, TLS_KEY = "tls.crt", "tls.key"  # the names a kubernetes.io/tls Secret uses
CA_DAYS = 3650
SERVING_DAYS = 365
DEV_SANS = ("localhost", "127.0.0.1")

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Bundle:
    directory: Path
    cert_file: Path
    key_file: Path
    ca_file: Path
    ca_bundle: str  # base64 PEM, the caBundle of a webhook configuration
    reused_ca: bool


def service_sans(service: str, namespace: str) -> list[str]:
    base = f"{service}.{namespace}"
    return [service, base, f"{base}.svc", f"{base}.svc.cluster.local"]


def write_bundle(directory: Path, sans: Iterable[str], days: int = SERVING_DAYS) -> Bundle:
    """Write a serving cert/key for ``sans`` signed by the CA in ``directory``.

    The CA there is reused when present, so a rotated serving certificate
    stays valid under the caBundle already registered with the apiserver.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key, reused = _load_or_create_ca(directory)
    names = list(dict.fromkeys(sans))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _sign(
        subject=names[0],
        public_key=key.public_key(),
        issuer=ca_cert.subject,
        issuer_key=ca_key,
        days=days,
        ca=False,
        sans=names,
    )
    # Key first: a reloading server that sees the new cert must find its key.
    _write_private(directory / TLS_KEY, _key_pem(key))
    (directory / TLS_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    return Bundle(
        directory=directory,
        cert_file=directory / TLS_CERT,
        key_file=directory / TLS_KEY,
        ca_file=directory / CA_CERT,
        ca_bundle=base64.b64encode(ca_pem).decode("ascii"),
        reused_ca=reused,
    )


def dev_pair(directory: Path) -> tuple[Path, Path, bool]:
    """The local development pair: reuse a valid one in ``directory``, else create it.

    Returns (cert, key, created).
    """
    cert_file, key_file = directory / TLS_CERT, directory / TLS_KEY
    if cert_file.exists() and key_file.exists() and not expires_within(cert_file, days=1):
        return cert_file, key_file, False
    write_bundle(directory, DEV_SANS)
    return cert_file, key_file, True


def not_after(cert_file: Path) -> datetime.datetime:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.not_valid_after_utc


def expires_within(cert_file: Path, days: float) -> bool:
    remaining = not_after(cert_file) - datetime.datetime.now(datetime.UTC)
    return remaining < datetime.timedelta(days=days)


def _load_or_create_ca(directory: Path) -> tuple[x509.Certificate, PrivateKey, bool]:
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, PrivateKey):
            raise ValueError(f"{key_path} is not an EC private key; remove it to make a new CA")
        return cert, key, True
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "heartbeat-webhook CA")])
    cert = _sign(
        subject="heartbeat-webhook CA",
        public_key=key.public_key(),
        issuer=name,
        issuer_key=key,
        days=CA_DAYS,
        ca=True,
        sans=[],
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, False


def _sign(
    *,
    subject: str,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    days: int,
    ca: bool,
    sans: list[str],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject[:64])]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # Key identifiers: strict verifiers (Python 3.13+ by default) require them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in sans]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _general_name(value: str) -> x509.GeneralName:
    # The apiserver matches an IP URL only against IP SANs, never a DNS SAN.
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode only applies to a new file
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
