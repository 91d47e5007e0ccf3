"""Every reason the HTTP input refuses a request or an event, with its status and its fix.

Falco ignores every status we answer (docs/falco-wire-contract.md#http-output-behaviour),
so each reason is also a value of `falco_exporter_http_input_rejected_total{reason}` from
start-up, and the live page says what to change. The server's own refusals (a request it
could not read) are reasons too; their words and statuses are the server's.
"""

from __future__ import annotations

from enum import StrEnum

from exporter.http.messages import Refusal


class Rejection(StrEnum):
    """Why the HTTP input refused what it read."""

    TEXT_OUTPUT = "text_output"  # Falco runs with json_output: false
    NOT_JSON = "not_json"
    NOT_AN_EVENT = "not_an_event"
    UNKNOWN_PRIORITY = "unknown_priority"
    EMPTY = "empty"
    BAD_ENCODING = "bad_encoding"  # a Content-Encoding the body does not match (bad gzip)
    PATH = "path"
    METHOD = "method"
    UNSUPPORTED_ENCODING = "unsupported_encoding"

    @property
    def status(self) -> int:
        """The status it is answered with."""
        return _STATUS.get(self, 400)


_STATUS = {Rejection.PATH: 404, Rejection.METHOD: 405, Rejection.UNSUPPORTED_ENCODING: 415}

Reason = Rejection | Refusal
# Every label value of the rejected counter, in a fixed order.
REASONS: tuple[Reason, ...] = (*Rejection, *Refusal)

TEXT_OUTPUT_FIX = (
    "Falco posts its text output: set json_output: true in falco.yaml "
    "(falco.json_output: true in the Falco Helm chart's values)"
)

# What to change, per reason: the live page shows the fix for each reason seen lately
# (docs/runbooks.md#falcoexporterhttpinputrejecting has the same, at length).
_NOT_FALCO = "the sender is not Falco's http_output, or a proxy changes the body"
_TRANSPORT = "a proxy or a client other than Falco, or the network between them"
FIXES: dict[Reason, str] = {
    Rejection.TEXT_OUTPUT: TEXT_OUTPUT_FIX,
    Rejection.NOT_JSON: _NOT_FALCO,
    Rejection.NOT_AN_EVENT: _NOT_FALCO,
    Rejection.UNKNOWN_PRIORITY: _NOT_FALCO,
    Rejection.EMPTY: _NOT_FALCO,
    Rejection.BAD_ENCODING: _TRANSPORT,
    Rejection.PATH: "http_output.url's path must be / or /events (the exporter takes POSTs there)",
    Rejection.METHOD: "POST only: http_output.url names something else",
    Rejection.UNSUPPORTED_ENCODING: _TRANSPORT,
    Refusal.MALFORMED_REQUEST: _TRANSPORT,
    Refusal.URI_TOO_LONG: _TRANSPORT,
    Refusal.HEADERS_TOO_LARGE: _TRANSPORT,
    Refusal.TOO_LARGE: "an alert over --http-input-max-body: raise it",
    Refusal.TIMEOUT: _TRANSPORT,
    Refusal.INCOMPLETE: _TRANSPORT,
}
