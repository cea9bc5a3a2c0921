"""webhook.certs: the CA and serving pair, checked with cryptography and a real TLS handshake."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook.certs import (
    CA_CERT,
    CA_KEY,
    TLS_CERT,
    TLS_KEY,
    dev_pair,
    expires_within,
    service_sans,
    write_bundle,
)

SERVICE, NAMESPACE = "heartbeat-webhook", "heartbeat-system"
HANDSHAKE_TIMEOUT = 5.0


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------- write_bundle


def test_service_sans() -> None:
    assert service_sans("svc", "ns") == ["svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local"]


def test_write_bundle_files_and_modes(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    bundle = write_bundle(out, [*service_sans(SERVICE, NAMESPACE), "127.0.0.1"])
    assert sorted(p.name for p in out.iterdir()) == sorted([CA_CERT, CA_KEY, TLS_CERT, TLS_KEY])
    assert (bundle.directory, bundle.cert_file, bundle.key_file, bundle.ca_file) == (
        out,
        out / TLS_CERT,
        out / TLS_KEY,
        out / CA_CERT,
    )
    assert mode(out / CA_KEY) == 0o600
    assert mode(out / TLS_KEY) == 0o600
    assert bundle.reused_ca is False
    assert base64.b64decode(bundle.ca_bundle, validate=True) == (out / CA_CERT).read_bytes()


def test_serving_cert_names_and_chain(tmp_path: Path) -> None:
    write_bundle(tmp_path, [*service_sans(SERVICE, NAMESPACE), "127.0.0.1", "::1"])
    ca, leaf = load(tmp_path / CA_CERT), load(tmp_path / TLS_CERT)

    names = sans(leaf)
    assert names.get_values_for_type(x509.DNSName) == service_sans(SERVICE, NAMESPACE)
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    leaf.verify_directly_issued_by(ca)

    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    lifetime = leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=364) < lifetime <= datetime.timedelta(days=365)


def test_serving_cert_drops_repeated_sans(tmp_path: Path) -> None:
    write_bundle(tmp_path, ["a.example", "a.example", "b.example"])
    assert sans(load(tmp_path / TLS_CERT)).get_values_for_type(x509.DNSName) == [
        "a.example",
        "b.example",
    ]


def test_second_bundle_reuses_the_ca(tmp_path: Path) -> None:
    first = write_bundle(tmp_path, service_sans(SERVICE, NAMESPACE))
    ca_pem, ca_key = (tmp_path / CA_CERT).read_bytes(), (tmp_path / CA_KEY).read_bytes()
    first_leaf = load(tmp_path / TLS_CERT)

    second = write_bundle(tmp_path, service_sans(SERVICE, NAMESPACE))

    assert second.reused_ca is True
    assert second.ca_bundle == first.ca_bundle
    assert (tmp_path / CA_CERT).read_bytes() == ca_pem
    assert (tmp_path / CA_KEY).read_bytes() == ca_key
    second_leaf = load(tmp_path / TLS_CERT)
    assert second_leaf.serial_number != first_leaf.serial_number
    second_leaf.verify_directly_issued_by(load(tmp_path / CA_CERT))


def test_rotation_tightens_a_loose_key_file(tmp_path: Path) -> None:
    """A key file left world-readable (e.g. `kubectl get secret ... > tls.key` under
    umask 022) must not keep those permissions when a new private key is written in.

    Known bug: certs._write_private passes 0o600 to os.open, which applies only
    when the file is created; an existing tls.key keeps its mode.
    """
    write_bundle(tmp_path, ["svc"])
    os.chmod(tmp_path / TLS_KEY, 0o644)
    write_bundle(tmp_path, ["svc"])
    assert mode(tmp_path / TLS_KEY) == 0o600


# ---------------------------------------------------------------- dev_pair


def test_dev_pair_is_created_once_then_reused(tmp_path: Path) -> None:
    cert, key, created = dev_pair(tmp_path)
    assert (cert, key, created) == (tmp_path / TLS_CERT, tmp_path / TLS_KEY, True)
    names = sans(load(cert))
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    pem = cert.read_bytes()

    assert dev_pair(tmp_path) == (cert, key, False)
    assert cert.read_bytes() == pem


def test_dev_pair_replaces_an_expiring_certificate(tmp_path: Path) -> None:
    write_bundle(tmp_path, ["localhost", "127.0.0.1"], days=0)
    assert expires_within(tmp_path / TLS_CERT, days=1)
    old = load(tmp_path / TLS_CERT).serial_number

    cert, _, created = dev_pair(tmp_path)

    assert created is True
    assert load(cert).serial_number != old
    assert not expires_within(cert, days=1)


# ---------------------------------------------------------------- TLS handshake


async def handshake(cert: Path, key: Path, client: ssl.SSLContext, server_hostname: str) -> bytes:
    """Serve the pair on a loopback port and read one line through a verifying client."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=server_hostname),
            HANDSHAKE_TIMEOUT,
        )
        line = await asyncio.wait_for(reader.readline(), HANDSHAKE_TIMEOUT)
        writer.close()
        return line
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), HANDSHAKE_TIMEOUT)


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_dev_pair_passes_a_real_handshake(tmp_path: Path, hostname: str) -> None:
    cert, key, _ = dev_pair(tmp_path)
    client = ssl.create_default_context(cafile=tmp_path / CA_CERT)
    assert asyncio.run(handshake(cert, key, client, hostname)) == b"ok\n"


@pytest.mark.parametrize(
    "hostname", [f"{SERVICE}.{NAMESPACE}.svc", f"{SERVICE}.{NAMESPACE}.svc.cluster.local"]
)
def test_service_pair_passes_a_real_handshake(tmp_path: Path, hostname: str) -> None:
    bundle = write_bundle(tmp_path, service_sans(SERVICE, NAMESPACE))
    client = ssl.create_default_context(cadata=base64.b64decode(bundle.ca_bundle).decode())
    assert asyncio.run(handshake(bundle.cert_file, bundle.key_file, client, hostname)) == b"ok\n"


def test_handshake_rejects_a_name_not_in_the_cert(tmp_path: Path) -> None:
    cert, key, _ = dev_pair(tmp_path)
    client = ssl.create_default_context(cafile=tmp_path / CA_CERT)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        asyncio.run(handshake(cert, key, client, "heartbeat-webhook.example"))


def test_handshake_rejects_another_ca(tmp_path: Path) -> None:
    cert, key, _ = dev_pair(tmp_path / "one")
    dev_pair(tmp_path / "other")
    client = ssl.create_default_context(cafile=tmp_path / "other" / CA_CERT)
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(handshake(cert, key, client, "localhost"))


def test_handshake_under_strict_x509_verification(tmp_path: Path) -> None:
    """Python 3.13+ sets VERIFY_X509_STRICT in create_default_context; the pair must pass it.

    Known bug: certs._sign adds no Authority/Subject Key Identifier extensions,
    and OpenSSL's strict mode fails with "Missing Authority Key Identifier".
    """
    cert, key, _ = dev_pair(tmp_path)
    client = ssl.create_default_context(cafile=tmp_path / CA_CERT)
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    assert asyncio.run(handshake(cert, key, client, "localhost")) == b"ok\n"
