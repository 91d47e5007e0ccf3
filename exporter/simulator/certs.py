"""Throwaway certificates for mutual TLS between a simulated Falco and the exporter.

Falco's TCP gRPC server always requires mutual TLS, so the simulator, the demo and
the tests need a CA, a server certificate and a client certificate. Validity is a
parameter so tests can make expired or not-yet-valid certificates too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Names every issued server certificate is valid for, like Falco's example certs.
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates."""

    def __init__(self, common_name: str = "falco-exporter test CA", days: int = 365) -> None:
        self._key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = ec.generate_private_key(
            ec.SECP256R1()
        )
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        """An existing CA (its certificate and key), to issue more certificates from it."""
        ca = cls.__new__(cls)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError("the CA key is neither an EC nor an RSA key")
        cert = x509.load_pem_x509_certificate(cert_pem)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if cert.public_key().public_bytes(serialization.Encoding.DER, spki) != (
            key.public_key().public_bytes(serialization.Encoding.DER, spki)
        ):
            raise ValueError("the CA key does not belong to the CA certificate")
        ca._key = key
        ca._name = cert.subject
        ca._cert = cert
        return ca

    @property
    def key_pem(self) -> bytes:
        """The CA's private key, for issuing more certificates later; keep it safe."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, for the peer that verifies certificates it issued."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        server: bool,
        dns_names: tuple[str, ...] = SERVER_NAMES,
        ip_addresses: tuple[str, ...] = SERVER_IPS,
        valid_from: dt.datetime | None = None,
        valid_until: dt.datetime | None = None,
    ) -> KeyPair:
        """Issue a server or client certificate, valid for a day unless told otherwise."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from or now - dt.timedelta(hours=1))
            .not_valid_after(valid_until or now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
            alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return KeyPair(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


@dataclass(frozen=True)
class CertPaths:
    """The files of one certificate set, named as Falco's examples name them."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def in_directory(cls, directory: Path) -> CertPaths:
        """ca.crt, server.crt/.key and client.crt/.key inside directory."""
        return cls(
            ca=directory / "ca.crt",
            server_cert=directory / "server.crt",
            server_key=directory / "server.key",
            client_cert=directory / "client.crt",
            client_key=directory / "client.key",
        )

    def complete(self) -> bool:
        """True when every file exists."""
        return all(path.is_file() for path in vars(self).values())


def write_cert_set(
    directory: Path,
    ca: CertificateAuthority | None = None,
    *,
    server: KeyPair | None = None,
    client: KeyPair | None = None,
) -> CertPaths:
    """Write a CA and server and client pairs it issued (or the given ones); keys 0600."""
    ca = ca or CertificateAuthority()
    directory.mkdir(parents=True, exist_ok=True)
    server = server or ca.issue("localhost", server=True)
    client = client or ca.issue("falco-exporter", server=False)
    paths = CertPaths.in_directory(directory)
    write_public(paths.ca, ca.cert_pem)
    write_public(paths.server_cert, server.cert_pem)
    write_private(paths.server_key, server.key_pem)
    write_public(paths.client_cert, client.cert_pem)
    write_private(paths.client_key, client.key_pem)
    return paths


def write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only, from the first byte on."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate (public data)."""
    path.write_bytes(data)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
