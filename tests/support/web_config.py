"""Helpers for the web configuration's tests: bcrypt hashes, files replaced whole (as a
Secret's rotation does), client certificates with chosen names, and curl whatever its exit."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exporter.simulator.certs import CertificateAuthority, KeyPair
from tests.support import curl


def bcrypt_hash(password: str, cost: int = 4) -> str:
    """A bcrypt hash as htpasswd -B writes it ($2y$), cheap by default (cost 4)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    return "$2y$" + hashed.removeprefix("$2b$")


def replace_file(path: Path, text: str) -> None:
    """Write `text` to `path` in one step (a rename): a watcher never reads half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def client_pair(
    ca: CertificateAuthority,
    common_name: str,
    *,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    emails: tuple[str, ...] = (),
) -> KeyPair:
    """A client certificate from `ca` with these subject alternative names."""
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    names += [x509.RFC822Name(email) for email in emails]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def write_pair(directory: Path, name: str, pair: KeyPair) -> tuple[Path, Path]:
    """`name`.crt and `name`.key in `directory`."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    key.chmod(0o600)
    return cert, key


def curl_any(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """curl `-sS`, whatever its exit status (a refused handshake is an error to curl)."""
    return curl(*args, timeout=timeout, check=False)
