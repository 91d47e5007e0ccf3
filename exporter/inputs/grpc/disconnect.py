"""Why a connection to Falco ended: one typed value, built from one table.

The reader returns a Disconnect for every end of a connection; the subscription decides
from its fields alone what to count, how loudly to log and whether to reset the backoff,
so no reason is ever compared as a string twice.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from enum import StrEnum

from exporter.inputs.grpc.status_hints import StatusError, describe


class Ending(StrEnum):
    """Why a connection ended, other than a gRPC status (whose code names the reason)."""

    STREAM_ENDED = "stream_ended"  # Falco ended the stream (restart, reload)
    CERTIFICATE_ROTATION = "certificate_rotation"  # new client files: connect with them
    STALLED = "stalled"  # an open call silent too long: half-open
    CERTIFICATE_FILES = "certificate_files"  # a client file cannot be read
    INTERNAL_ERROR = "internal_error"  # a bug of ours; logged with its traceback


@dataclass(frozen=True)
class Disconnect:
    """The end of one connection attempt, and what follows from it."""

    reason: str  # the `reason` label of falco_exporter_connection_errors_total
    detail: str  # for the log line: what happened and what to check
    level: int  # the log level of the line (logging.INFO, ...)
    counts_as_error: bool  # counted in falco_exporter_connection_errors_total
    resets_backoff: bool  # reconnect at once, the backoff back to its first delay


# ending: (log level, counts as an error, resets the backoff)
_KINDS: dict[Ending, tuple[int, bool, bool]] = {
    Ending.STREAM_ENDED: (logging.INFO, False, False),
    Ending.CERTIFICATE_ROTATION: (logging.INFO, False, True),
    Ending.STALLED: (logging.WARNING, True, False),
    Ending.CERTIFICATE_FILES: (logging.ERROR, True, False),
    Ending.INTERNAL_ERROR: (logging.ERROR, True, False),
}
# Every gRPC status: its code's name is the reason.
_RPC_KIND = (logging.WARNING, True, False)


def disconnect(ending: Ending, detail: str) -> Disconnect:
    """The Disconnect of an ending of the table."""
    level, counts, resets = _KINDS[ending]
    return Disconnect(ending, detail, level, counts, resets)


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
