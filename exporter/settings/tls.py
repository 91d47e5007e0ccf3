"""Certificate files checked the way the TLS library will use them, before anything starts.

Reading a file proves little: a garbage certificate, a key from another pair or a CA that
is not PEM only fail at the first handshake, and then far from the flag that named them.
Loading them into an SSL context finds all three at start-up.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from exporter.settings.errors import CertificateFilesError


def check_key_pair(cert: str, key: str) -> None:
    """The certificate and its key load, and belong together; else ValueError saying why."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            problem = "the key does not belong to the certificate"
        else:
            problem = "not a PEM certificate and its private key (swapped, or another format?)"
        raise ValueError(f"{cert} with key {key}: {problem}") from None


def check_ca(ca: str) -> None:
    """The CA file holds at least one PEM certificate; else ValueError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(ca)
    except ssl.SSLError as error:
        del error
        raise ValueError(f"{ca}: not a PEM CA certificate") from None


@dataclass(frozen=True)
class Validity:
    """When a certificate file's (first) certificate is valid, as Unix times."""

    not_before: float
    not_after: float


def validity(path: str) -> Validity | None:
    """The validity of the first certificate in a PEM file; None if it cannot be read.

    The standard library decodes a certificate file only through this helper of its own
    tests; it has been there since Python 3.3, and the exporter needs no other dependency
    for two dates. Without it, the dates are simply not checked.
    """
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decode is None:
        return None
    try:
        info = decode(path)
        return Validity(
            ssl.cert_time_to_seconds(info["notBefore"]), ssl.cert_time_to_seconds(info["notAfter"])
        )
    except (ssl.SSLError, OSError, KeyError, ValueError):
        return None


def check_dates(path: str, now: float | None = None) -> None:
    """ValueError if the certificate is expired or not valid yet."""
    dates = validity(path)
    if dates is None:
        return
    moment = time.time() if now is None else now
    if dates.not_after <= moment:
        raise ValueError(f"{path}: the certificate expired on {utc_time(dates.not_after)}")
    if dates.not_before > moment:
        raise ValueError(
            f"{path}: the certificate is not valid before {utc_time(dates.not_before)}"
        )


def utc_time(when: float) -> str:
    """A moment as a person reads it in a log line or an error."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))


def server_ssl_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """TLS for a listener; with a CA, clients must present a certificate it signed.

    A file that is not what it should be raises CertificateFilesError naming it.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        raise CertificateFilesError(
            f"certificate {cert} with key {key}: {error.strerror or error} "
            "(not PEM, or the key does not belong to the certificate)"
        ) from None
    if ca:
        try:
            context.load_verify_locations(ca)
        except (ssl.SSLError, OSError) as error:
            raise CertificateFilesError(f"CA {ca}: {error.strerror or error}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
