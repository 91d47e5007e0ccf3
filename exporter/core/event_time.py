"""An event's time as seconds since the epoch, from either form an input gives it (#25).

Falco's JSON writes `time` as RFC 3339 in UTC with nanoseconds, always 30 characters
(`2018-08-17T17:35:48.514632619Z`, docs/falco-wire-contract.md#falco-json-event); gRPC
carries a `google.protobuf.Timestamp`. The delay histogram (event_delay.py) reads the JSON
text of a second it has already seen in line, on the hot path; everything else comes here.
"""

from __future__ import annotations

import datetime as dt

# The length of Falco's text, and where its whole second ends ("...T17:35:48.").
FALCO_TEXT_LENGTH = 30
SECOND_PREFIX = 20
# What a reader that has seen no second yet holds: a prefix of no text.
NO_SECOND = ("\0", 0)


def fraction_of(text: str) -> float | None:
    """The `.514632619` of Falco's text, as a fraction of a second; None if not digits."""
    digits = text[SECOND_PREFIX : FALCO_TEXT_LENGTH - 1]
    return int(digits) * 1e-9 if digits.isascii() and digits.isdigit() else None


def read_text(value: object, second: tuple[str, int]) -> tuple[float | None, tuple[str, int]]:
    """The time of a JSON `time` (None: missing or unreadable), and the second to remember:
    Falco's own text gives its own (its prefix and epoch seconds), anything else keeps
    `second`. Other ISO 8601 text with a zone is read too (another sender); without a zone
    it is not (whose clock?)."""
    if type(value) is not str:
        return None, second
    if len(value) == FALCO_TEXT_LENGTH and value[-1] == "Z" and value[SECOND_PREFIX - 1] == ".":
        prefix = value[:SECOND_PREFIX]
        if prefix != second[0]:
            epoch = _epoch(prefix[:-1])
            if epoch is None:
                return None, second
            second = (prefix, epoch)
        fraction = fraction_of(value)
        return (None if fraction is None else second[1] + fraction), second
    return _any_iso_8601(value), second


def read_timestamp(value: object) -> float | None:
    """A gRPC Timestamp as seconds; None when absent or left at 0 (unset)."""
    seconds = getattr(value, "seconds", None)
    nanos = getattr(value, "nanos", None)
    if type(seconds) is not int or type(nanos) is not int or not (seconds or nanos):
        return None
    return seconds + nanos * 1e-9


def _epoch(whole: str) -> int | None:
    """`YYYY-MM-DDTHH:MM:SS` in UTC as seconds since the epoch, or None."""
    if not whole.isascii() or whole[10:11] != "T":
        return None
    try:
        moment = dt.datetime.fromisoformat(whole)
    except ValueError:
        return None
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


def _any_iso_8601(value: str) -> float | None:
    if not value.isascii() or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None
