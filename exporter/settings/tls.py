"""Certificate files: a set named once, checked the way TLS will use them, and made into a
listener's TLS context in one place.

Reading a file proves little: a garbage certificate, a key from another pair or a CA that
is not PEM only fail at the first handshake, and then far from the setting that named
them. Loading them into an SSL context finds all three at start-up.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from exporter.settings.x509_dates import Validity, read_validity


class CertificateFilesError(Exception):
    """A certificate, key or CA file could not be read or used; the message names it."""


@dataclass(frozen=True)
class TlsFiles:
    """A certificate, its key and (optionally) the CA that peers' certificates must chain to."""

    cert: str
    key: str
    ca: str = ""

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file of the set, for a watch of their contents."""
        return tuple(path for path in (self.cert, self.key, self.ca) if path)


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
    except ssl.SSLError:
        raise ValueError(f"{ca}: not a PEM CA certificate") from None


def check_dates(path: str, now: float | None = None) -> Validity | None:
    """The certificate's dates; ValueError if it is expired or not valid yet."""
    dates = read_validity(path)
    if dates is None:
        return None
    moment = time.time() if now is None else now
    if dates.not_after <= moment:
        raise ValueError(f"{path}: the certificate expired on {utc_time(dates.not_after)}")
    if dates.not_before > moment:
        raise ValueError(
            f"{path}: the certificate is not valid before {utc_time(dates.not_before)}"
        )
    return dates


def utc_time(when: float) -> str:
    """A moment as a person reads it in a log line or an error."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS for one of our listeners; with a CA, clients must present a certificate it signed.

    The one place a listener's TLS is built. A file that is not what it should be raises
    CertificateFilesError naming it.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(files.cert, files.key)
    except (ssl.SSLError, OSError) as error:
        raise CertificateFilesError(
            f"certificate {files.cert} with key {files.key}: {error.strerror or error} "
            "(not PEM, or the key does not belong to the certificate)"
        ) from None
    if files.ca:
        try:
            context.load_verify_locations(files.ca)
        except (ssl.SSLError, OSError) as error:
            raise CertificateFilesError(f"CA {files.ca}: {error.strerror or error}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
