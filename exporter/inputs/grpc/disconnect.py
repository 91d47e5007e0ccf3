"""Why a connection to Falco ended: one typed value, built from one table.

The reader returns a Disconnect for every end of a connection; the subscription decides
from its fields alone what to count, how loudly to log and whether to reset the backoff,
so no reason is ever compared as a string twice.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from exporter.inputs.grpc.status_hints import StatusError, describe


@dataclass(frozen=True)
class Disconnect:
    """The end of one connection attempt, and what follows from it."""

    reason: str  # the `reason` label of falco_exporter_connection_errors_total
    detail: str  # for the log line: what happened and what to check
    level: str  # the log level of the line
    counts_as_error: bool  # counted in falco_exporter_connection_errors_total
    resets_backoff: bool  # reconnect at once, the backoff back to its first delay


# reason: (log level, counts as an error, resets the backoff)
_KINDS: dict[str, tuple[str, bool, bool]] = {
    "stream_ended": ("info", False, False),  # Falco ended the stream (restart, reload)
    "certificate_rotation": ("info", False, True),  # new client files: connect with them
    "stalled": ("warning", True, False),  # an open call silent too long: half-open
    "certificate_files": ("error", True, False),  # a client file cannot be read
    "internal_error": ("error", True, False),  # a bug of ours; logged with its traceback
}
# Every gRPC status: its code's name is the reason.
_RPC_KIND = ("warning", True, False)


def disconnect(reason: str, detail: str) -> Disconnect:
    """The Disconnect of a reason of the table."""
    level, counts, resets = _KINDS[reason]
    return Disconnect(reason, detail, level, counts, resets)


def socket_refusal(path: str) -> str:
    """Why a unix socket refuses us, from its owner and mode, and what fixes it for good.

    Connecting needs write permission on the socket file. Falco creates it as root, mode
    0755, at every start, so changing its group or mode does not last; its owner (uid 0)
    can connect with every capability dropped.
    """
    try:
        status = os.stat(path)
    except OSError as error:
        return f"cannot inspect {path}: {error.strerror}"
    return (
        f"{path} is owned by uid {status.st_uid} with mode {stat.S_IMODE(status.st_mode):04o}, "
        f"and this process runs as uid {os.geteuid()}: connecting needs write permission on "
        "the socket; run the exporter as uid 0 with every capability dropped "
        "(deploy/k8s/overlays/daemonset-socket does)"
    )


def rpc_disconnect(error: StatusError, tls_files: str = "", socket_path: str = "") -> Disconnect:
    """The Disconnect of a failed gRPC call: its status code, and a hint where one helps.

    When the hint is about certificates, `tls_files` (which files are in use) is added, so
    the line says which file to look at; a unix socket that refuses us is inspected.
    """
    reason, hint = describe(error)
    if socket_path and "Permission denied" in (error.details() or ""):
        hint = socket_refusal(socket_path)
    if hint and tls_files and ("certificate" in hint or "TLS" in hint):
        hint = f"{hint}; files in use: {tls_files}"
    detail = (error.details() or "") + (f" ({hint})" if hint else "")
    level, counts, resets = _RPC_KIND
    return Disconnect(reason, detail, level, counts, resets)
