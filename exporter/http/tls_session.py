"""TLS on a listener, done by the connection itself over memory buffers, so that every
failed handshake is seen, counted by reason and answered with a hint.

asyncio's own TLS transports drop a failed handshake without telling the protocol: a Falco
without its client certificate, with another CA's, or posting plain `http://` to a TLS port
would lose every alert with nothing logged. Here the connection feeds the bytes it reads
to an `ssl.SSLObject` and writes what it produces, as asyncio's sslproto does, and a
handshake error surfaces as a HandshakeFailed with its reason.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from enum import StrEnum
from typing import Any

_READ_SIZE = 64 * 1024
# The first bytes of a plain HTTP request (a method), where a TLS record starts with 0x16.
_HTTP_METHOD_LETTERS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# X.509 verification codes (OpenSSL's X509_V_ERR_*) that mean "not signed by a CA we trust".
_UNKNOWN_ISSUER = frozenset({2, 18, 19, 20, 21})


class HandshakeFailure(StrEnum):
    """Why a TLS handshake failed; each is a metric label value."""

    PLAIN_HTTP = "plain_http"  # a plain HTTP request on the TLS port (http:// URL)
    NO_CLIENT_CERTIFICATE = "no_client_certificate"  # required, and none presented
    UNKNOWN_CA = "unknown_ca"  # the client's certificate is not signed by our CA
    BAD_CLIENT_CERTIFICATE = "bad_client_certificate"  # expired, not yet valid, unusable
    SERVER_CERTIFICATE_REFUSED = "server_certificate_refused"  # the client distrusts ours
    PROTOCOL = "protocol"  # no common version or cipher, or not TLS at all
    TIMEOUT = "timeout"  # the handshake did not finish within the read timeout
    # A verified certificate with none of a web configuration's client_allowed_sans; counted
    # only on a listener that has a web configuration with TLS.
    CLIENT_NOT_ALLOWED = "client_not_allowed"


# What every TLS listener counts from start-up.
COUNTED = tuple(
    reason for reason in HandshakeFailure if reason is not HandshakeFailure.CLIENT_NOT_ALLOWED
)
# Why a client's verified certificate (ssl's getpeercert()) is refused, or None.
PeerCheck = Callable[[dict[str, Any]], str | None]


class HandshakeFailed(Exception):  # noqa: N818 - a failure the peer caused, not a bug
    """The peer's handshake failed; `reason` says how."""

    def __init__(self, reason: HandshakeFailure, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def looks_like_plain_http(first: bytes) -> bool:
    """Whether the first bytes of a connection are an HTTP method, not a TLS record."""
    return bool(first) and first[0] in _HTTP_METHOD_LETTERS


def classify(error: ssl.SSLError) -> HandshakeFailure:
    """The reason of a failed server-side handshake, from OpenSSL's words for it."""
    reason = error.reason or ""
    if isinstance(error, ssl.SSLCertVerificationError):
        if error.verify_code in _UNKNOWN_ISSUER:
            return HandshakeFailure.UNKNOWN_CA
        return HandshakeFailure.BAD_CLIENT_CERTIFICATE
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return HandshakeFailure.NO_CLIENT_CERTIFICATE
    if reason == "HTTP_REQUEST":
        return HandshakeFailure.PLAIN_HTTP
    if "ALERT" in reason and any(word in reason for word in ("CA", "CERTIFICATE")):
        return HandshakeFailure.SERVER_CERTIFICATE_REFUSED
    return HandshakeFailure.PROTOCOL


class TlsSession:
    """The server side of one TLS connection, over memory buffers."""

    def __init__(self, context: ssl.SSLContext, check_peer: PeerCheck | None = None) -> None:
        self._check_peer = check_peer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.established = False
        self.peer_closed = False

    def receive(self, data: bytes) -> bytes:
        """The plaintext in `data`, once the handshake is done; raises HandshakeFailed."""
        self._incoming.write(data)
        if not self.established:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            except ssl.SSLError as error:
                raise HandshakeFailed(classify(error), error.reason or str(error)) from None
            if self._check_peer is not None:
                problem = self._check_peer(self._tls.getpeercert() or {})
                if problem:
                    raise HandshakeFailed(HandshakeFailure.CLIENT_NOT_ALLOWED, problem)
            self.established = True
        chunks = []
        while True:
            try:
                chunk = self._tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the peer's close_notify
                self.peer_closed = True
                break
            except ssl.SSLError:  # a corrupt record after the handshake: the peer is gone
                self.peer_closed = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def pending(self) -> bytes:
        """What TLS has to send now (handshake messages, an alert)."""
        return self._outgoing.read()

    def encrypt(self, data: bytes) -> bytes:
        """`data` as TLS records to send."""
        self._tls.write(data)
        return self._outgoing.read()

    def close_notify(self) -> bytes:
        """The alert that ends the session cleanly, to send before closing."""
        with contextlib.suppress(ssl.SSLError):  # waiting for the peer's: not needed here
            self._tls.unwrap()
        return self._outgoing.read()
