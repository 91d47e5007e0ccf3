"""Certificate files checked the way the TLS library will use them, before anything starts.

Reading a file proves little: a garbage certificate, a key from another pair or a CA that
is not PEM only fail at the first handshake, and then far from the flag that named them.
Loading them into an SSL context finds all three at start-up.
"""

from __future__ import annotations

import ssl


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
