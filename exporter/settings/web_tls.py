"""The TLS context of a web configuration's `tls_server_config`, and its client SAN check.

Made at start-up and again at each reload, so a rotated certificate is served to the next
connection. Inline PEM (`cert`, `key`) is loaded through an anonymous memory file, never
written to disk (the image's root filesystem is read-only). Errors name the key and file.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
from collections.abc import Iterator
from typing import Any

from exporter.settings.web_config import WebConfigError, WebTls
from exporter.settings.web_words import ClientAuth

_VERIFY = {
    ClientAuth.NONE: ssl.CERT_NONE,
    ClientAuth.VERIFY_IF_GIVEN: ssl.CERT_OPTIONAL,
    ClientAuth.REQUIRE_AND_VERIFY: ssl.CERT_REQUIRED,
}
# The kinds of subject alternative name the toolkit matches (Python's words for them).
_SAN_KINDS = frozenset({"DNS", "IP Address", "email", "URI"})


def web_server_context(tls: WebTls, path: str) -> ssl.SSLContext:
    """TLS for a listener, as `tls_server_config` says; WebConfigError names what failed."""
    where = f"in {path}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version = tls.min_version
        context.maximum_version = tls.max_version
    except (ValueError, ssl.SSLError) as error:
        raise WebConfigError(f"tls_server_config.min_version {where}: {error}") from None
    with _pem(tls.cert_file, tls.cert) as cert, _pem(tls.key_file, tls.key) as key:
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as error:
            names = f"{_named(tls.cert_file, 'cert')} and {_named(tls.key_file, 'key')}"
            raise WebConfigError(
                f"tls_server_config: {names} {where}: {getattr(error, 'strerror', None) or error}"
                " (not PEM, or the key does not belong to the certificate)"
            ) from None
    if tls.client_ca_file or tls.client_ca:
        try:
            if tls.client_ca_file:
                context.load_verify_locations(cafile=tls.client_ca_file)
            else:
                context.load_verify_locations(cadata=tls.client_ca)
        except (ssl.SSLError, OSError, ValueError) as error:
            key = _named(tls.client_ca_file, "client_ca")
            raise WebConfigError(f"tls_server_config.{key} {where}: {error}") from None
    context.verify_mode = _VERIFY[tls.client_auth]
    if tls.ciphers:
        try:
            context.set_ciphers(":".join(tls.ciphers))
        except ssl.SSLError:
            raise WebConfigError(
                f"tls_server_config.cipher_suites {where}: none of them is available in "
                f"this OpenSSL ({ssl.OPENSSL_VERSION})"
            ) from None
    if tls.curve:
        try:
            context.set_ecdh_curve(tls.curve)
        except (ValueError, ssl.SSLError) as error:
            raise WebConfigError(f"tls_server_config.curve_preferences {where}: {error}") from None
    return context


def _named(path: str, key: str) -> str:
    return f"{key}_file {path}" if path else key


@contextlib.contextmanager
def _pem(path: str, inline: str) -> Iterator[str]:
    """A path OpenSSL can read: the file's, or an anonymous memory file holding `inline`."""
    if path:
        yield path
        return
    descriptor = os.memfd_create("web-config-pem", os.MFD_CLOEXEC)
    try:
        os.write(descriptor, inline.encode())
        yield f"/proc/self/fd/{descriptor}"
    finally:
        os.close(descriptor)


def san_problem(certificate: dict[str, Any], allowed: tuple[str, ...]) -> str | None:
    """Why a verified client certificate is refused by `client_allowed_sans`, or None.

    The toolkit's rule: one of its DNS, IP, e-mail or URI names equals an entry. IP
    addresses compare as addresses (Python writes IPv6 in full, Go in short form).
    """
    names = [
        str(value).strip()
        for kind, value in certificate.get("subjectAltName", ())
        if kind in _SAN_KINDS
    ]
    wanted = {_canonical(entry) for entry in allowed}
    if any(_canonical(name) in wanted for name in names):
        return None
    found = ", ".join(names) or "none"
    return f"the client certificate's names ({found}) are not in client_allowed_sans"


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name
