"""Turn gRPC failures into a short reason (a metric label) and a hint a person can act on.

gRPC reports TLS and connection problems as UNAVAILABLE with the cause buried in
the details text; users need to know which file or setting to fix.
"""

from __future__ import annotations

from typing import Protocol

import grpc


class StatusError(Protocol):
    """What a failed call carries: grpc.RpcError, sync or aio."""

    def code(self) -> object: ...
    def details(self) -> str | None: ...


# (substring of the details, hint), first match wins.
_HINTS: tuple[tuple[str, str], ...] = (
    ("certificate has expired", "Falco's server certificate has expired"),
    (
        "Hostname Verification",
        "Falco's certificate does not name the host dialled; "
        "set --client-tls-server-name to a name in it",
    ),
    ("BAD_SIGNATURE", "Falco's certificate is not signed by the CA in --client-ca"),
    ("CERTIFICATE_VERIFY_FAILED", "Falco's certificate failed verification against --client-ca"),
    (
        "Tls handshake failed",
        "TLS handshake with Falco failed; check --client-ca, --client-cert and --client-key",
    ),
    (
        "Ssl handshake failed",
        "TLS handshake with Falco failed; check --client-ca, --client-cert and --client-key",
    ),
    (
        "Socket closed",
        "Falco closed the connection; if this repeats it is rejecting our "
        "client certificate (not signed by its grpc.root_certs, or expired)",
    ),
    (
        "Connection refused",
        "nothing listens there; is Falco (0.43 or older) running with grpc.enabled and "
        "grpc_output.enabled? Falco 0.44 and later have no gRPC: use --http-input-address",
    ),
    (
        "No such file or directory",
        "the unix socket does not exist; is Falco (0.43 or older) running with grpc.enabled "
        "and grpc_output.enabled? Falco 0.44 and later have no gRPC: use --http-input-address",
    ),
    ("Permission denied", "no permission to open the unix socket"),
    ("DNS resolution failed", "the host name does not resolve"),
)

_CODE_HINTS = {
    grpc.StatusCode.UNIMPLEMENTED: "this server has no Falco outputs service "
    "(Falco before 0.24, or not Falco)",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Falco did not answer in time",
}


def describe(error: StatusError) -> tuple[str, str]:
    """(reason, hint): the status code in lower case, and what to check."""
    code = error.code()
    assert isinstance(code, grpc.StatusCode)
    details = error.details() or ""
    reason = code.name.lower()
    for needle, hint in _HINTS:
        if needle in details:
            return reason, hint
    return reason, _CODE_HINTS.get(code, "")
