"""The validity dates of a PEM certificate, read with the standard library alone.

The ssl module decodes a certificate file only through a private helper of its own tests,
and the exporter takes no dependency for two dates: they sit in the first few fields of the
certificate, so a short, bounds-checked walk of its DER finds them. Anything malformed
reads as None; nothing here raises.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_PEM = re.compile(rb"-----BEGIN ((?:TRUSTED )?CERTIFICATE)-----(.*?)-----END \1-----", re.DOTALL)
_UTC_TIME = re.compile(rb"([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})Z")
_GENERALIZED_TIME = re.compile(
    rb"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})(\.[0-9]+)?Z"
)
_SEQUENCE, _INTEGER, _VERSION = 0x30, 0x02, 0xA0
_UTC_TIME_TAG, _GENERALIZED_TIME_TAG = 0x17, 0x18


@dataclass(frozen=True)
class Validity:
    """When a certificate is valid, as Unix times (seconds)."""

    not_before: float
    not_after: float


def read_validity(path: str) -> Validity | None:
    """The validity of the first certificate in a PEM file; None if it cannot be read or
    holds no certificate that parses."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except (OSError, ValueError):
        return None
    return validity_of_pem(data)


def validity_of_pem(data: bytes) -> Validity | None:
    """The same, from PEM bytes."""
    block = _PEM.search(data)
    if block is None:
        return None
    try:
        return _validity_of_der(base64.b64decode(b"".join(block.group(2).split()), validate=True))
    except ValueError:  # binascii.Error is one too
        return None


def _validity_of_der(der: bytes) -> Validity:
    """Certificate -> tbsCertificate -> [version] serial, signature, issuer -> validity."""
    _, start, end = _expect(der, 0, len(der), _SEQUENCE)  # Certificate
    _, pos, end = _expect(der, start, end, _SEQUENCE)  # tbsCertificate
    tag, _, after = _tlv(der, pos, end)
    if tag == _VERSION:
        pos = after
    for field in (_INTEGER, _SEQUENCE, _SEQUENCE):  # serialNumber, signature, issuer
        pos = _expect(der, pos, end, field)[2]
    _, pos, end = _expect(der, pos, end, _SEQUENCE)  # validity
    tag, start, pos = _tlv(der, pos, end)
    not_before = _time(tag, der[start:pos])
    tag, start, pos = _tlv(der, pos, end)
    return Validity(not_before, _time(tag, der[start:pos]))


def _tlv(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The tag, content start and content end of the element at pos; ValueError past end."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag numbers are not needed here")
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise ValueError("indefinite, oversized or truncated length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _expect(der: bytes, pos: int, end: int, tag: int) -> tuple[int, int, int]:
    """As _tlv, and ValueError unless the element has this tag."""
    found = _tlv(der, pos, end)
    if found[0] != tag:
        raise ValueError(f"tag {found[0]:#x}, not {tag:#x}")
    return found


def _time(tag: int, text: bytes) -> float:
    """A UTCTime or GeneralizedTime as a Unix time; ValueError if it is neither."""
    if tag == _UTC_TIME_TAG and (match := _UTC_TIME.fullmatch(text)):
        year = int(match[1]) + (1900 if int(match[1]) >= 50 else 2000)  # RFC 5280, 4.1.2.5.1
        fraction = 0.0
    elif tag == _GENERALIZED_TIME_TAG and (match := _GENERALIZED_TIME.fullmatch(text)):
        year, fraction = int(match[1]), float(match[7] or 0)
    else:
        raise ValueError("not a UTCTime or GeneralizedTime")
    month, day, hour, minute, second = (int(match[group]) for group in range(2, 7))
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return moment.timestamp() + fraction
