"""exporter.settings.x509_dates against cryptography, which decodes the same certificates."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from exporter.settings.x509_dates import Validity, read_validity, validity_of_pem

UTC = dt.UTC
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def certificate(
    key: Key, not_before: dt.datetime, not_after: dt.datetime, name: str = "test"
) -> x509.Certificate:
    """A self-signed certificate valid from not_before to not_after."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


def pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    """The certificate as DER."""
    return cert.public_bytes(serialization.Encoding.DER)


def armour(body: bytes, label: bytes = b"CERTIFICATE") -> bytes:
    """DER bytes (or anything) base64-encoded inside PEM armour."""
    text = base64.encodebytes(body)
    return b"-----BEGIN " + label + b"-----\n" + text + b"-----END " + label + b"-----\n"


def expected(cert: x509.Certificate) -> Validity:
    """The validity as cryptography reads it."""
    return Validity(cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp())


def tlv(tag: int, content: bytes) -> bytes:
    """A DER element, with a long-form length when it needs one."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def tbs_fields(not_before: bytes, not_after: bytes, *, version: bool = True) -> bytes:
    """The tbsCertificate's fields up to its validity, built by hand."""
    fields = tlv(0xA0, tlv(0x02, b"\x02")) if version else b""
    fields += tlv(0x02, b"\x01") + tlv(0x30, tlv(0x06, b"\x2a\x03")) + tlv(0x30, b"")
    return fields + tlv(0x30, not_before + not_after)


def wrap(fields: bytes) -> bytes:
    """A Certificate around tbsCertificate fields, with an empty signature."""
    return tlv(0x30, tlv(0x30, fields) + tlv(0x30, b"") + tlv(0x03, b"\x00"))


def hand_made(not_before: bytes, not_after: bytes, *, version: bool = True) -> bytes:
    """A certificate's DER down to its validity: enough for the reader."""
    return wrap(tbs_fields(not_before, not_after, version=version))


WINDOWS = [
    (dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2025, 1, 1, tzinfo=UTC)),
    (dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), dt.datetime(2049, 12, 31, tzinfo=UTC)),
    (dt.datetime(2020, 2, 29, 12, 30, 45, tzinfo=UTC), dt.datetime(2055, 6, 15, 8, 0, tzinfo=UTC)),
    (dt.datetime(1950, 1, 1, tzinfo=UTC), dt.datetime(2050, 1, 1, tzinfo=UTC)),
    (dt.datetime(2000, 1, 1, tzinfo=UTC), dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
]


@pytest.mark.parametrize("key", [EC_KEY, RSA_KEY], ids=["ec", "rsa"])
@pytest.mark.parametrize(("not_before", "not_after"), WINDOWS)
def test_dates_match_cryptography(
    key: Key, not_before: dt.datetime, not_after: dt.datetime
) -> None:
    """Both dates equal cryptography's, for UTCTime and GeneralizedTime alike."""
    cert = certificate(key, not_before, not_after)
    assert validity_of_pem(pem(cert)) == expected(cert)
    assert expected(cert) == Validity(not_before.timestamp(), not_after.timestamp())


def test_1999_and_2055_use_both_time_types() -> None:
    """A 1999 notBefore is a UTCTime of year 99 and a 2055 notAfter a GeneralizedTime."""
    cert = certificate(
        EC_KEY, dt.datetime(1999, 5, 1, tzinfo=UTC), dt.datetime(2055, 5, 1, tzinfo=UTC)
    )
    assert b"\x17\x0d990501000000Z" in der(cert)
    assert b"\x18\x0f20550501000000Z" in der(cert)
    assert validity_of_pem(pem(cert)) == Validity(925516800.0, 2692742400.0)


def test_reads_a_file(tmp_path: Path) -> None:
    """read_validity reads the certificate from a file."""
    cert = certificate(RSA_KEY, *WINDOWS[2])
    path = tmp_path / "cert.pem"
    path.write_bytes(pem(cert))
    assert read_validity(str(path)) == expected(cert)


def test_a_key_before_the_certificate_is_skipped(tmp_path: Path) -> None:
    """A private key ahead of the certificate in the file does not hide it."""
    cert = certificate(EC_KEY, *WINDOWS[0])
    key = EC_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "both.pem"
    path.write_bytes(key + pem(cert))
    assert read_validity(str(path)) == expected(cert)


def test_the_first_certificate_of_a_chain_wins(tmp_path: Path) -> None:
    """Of two certificates in one file, the first one's dates are read."""
    first = certificate(EC_KEY, *WINDOWS[0], name="leaf")
    second = certificate(RSA_KEY, *WINDOWS[2], name="ca")
    path = tmp_path / "chain.pem"
    path.write_bytes(b"some text before\n" + pem(first) + pem(second))
    assert read_validity(str(path)) == expected(first)
    path.write_bytes(pem(second) + pem(first))
    assert read_validity(str(path)) == expected(second)


def test_a_trusted_certificate_is_read() -> None:
    """OpenSSL's TRUSTED CERTIFICATE, the DER followed by trust settings, reads too."""
    cert = certificate(EC_KEY, *WINDOWS[1])
    data = armour(der(cert) + tlv(0x30, b""), b"TRUSTED CERTIFICATE")
    assert validity_of_pem(data) == expected(cert)


def test_hand_made_times() -> None:
    """Two-digit years pivot at 50, fractions count, and the version field is optional."""
    pivot = hand_made(b"\x17\x0d491231235959Z", b"\x17\x0d500101000000Z")
    assert validity_of_pem(armour(pivot)) == Validity(2524607999.0, -631152000.0)
    fraction = hand_made(b"\x18\x1220240101000000.25Z", b"\x18\x0f20240101000001Z")
    assert validity_of_pem(armour(fraction)) == Validity(1704067200.25, 1704067201.0)
    plain = hand_made(b"\x17\x0d240101000000Z", b"\x17\x0d250101000000Z", version=False)
    assert validity_of_pem(armour(plain)) == Validity(1704067200.0, 1735689600.0)


@pytest.mark.parametrize(
    "time",
    [
        b"\x17\x0d2401010000Z",  # no seconds
        b"\x17\x0b2401010000Z",  # no seconds, length to match
        b"\x17\x0d240101000000+",  # not Z
        b"\x17\x0d241301000000Z",  # month 13
        b"\x17\x0d240230000000Z",  # 30 February
        b"\x17\x0d24010100000aZ",  # a letter
        b"\x18\x0d240101000000Z",  # a UTCTime tagged as GeneralizedTime
        b"\x17\x0f20240101000000Z",  # a GeneralizedTime tagged as UTCTime
        b"\x18\x0f00000101000000Z",  # year 0
        b"\x18\x1020240101000000.Z",  # an empty fraction
        b"\x04\x0d240101000000Z",  # an OCTET STRING
    ],
)
def test_bad_times_are_none(time: bytes) -> None:
    """A notBefore that is no valid UTCTime or GeneralizedTime gives None."""
    good = b"\x17\x0d250101000000Z"
    assert validity_of_pem(armour(hand_made(good, good))) is not None
    assert validity_of_pem(armour(hand_made(time, good))) is None
    assert validity_of_pem(armour(hand_made(good, time))) is None


def test_malformed_lengths_are_none() -> None:
    """Indefinite, oversized and short lengths give None."""
    good = hand_made(b"\x17\x0d240101000000Z", b"\x17\x0d250101000000Z")
    assert validity_of_pem(armour(good)) is not None
    indefinite = b"\x30\x80" + good[2:] + b"\x00\x00"
    assert validity_of_pem(armour(indefinite)) is None
    oversized = b"\x30\x85\x00\x00\x00\x00" + bytes([good[1]]) + good[2:]
    assert validity_of_pem(armour(oversized)) is None
    # The outer SEQUENCE claims one byte more than follows.
    assert validity_of_pem(armour(bytes([0x30, good[1] + 1]) + good[2:])) is None
    high_tag = b"\x1f\x01\x00"
    assert validity_of_pem(armour(tlv(0x30, tlv(0x30, high_tag)))) is None


def test_unreadable_or_empty_files_are_none(tmp_path: Path) -> None:
    """A missing file, a directory, an empty file and a non-PEM file give None."""
    assert read_validity(str(tmp_path / "missing.pem")) is None
    assert read_validity(str(tmp_path)) is None
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    assert read_validity(str(empty)) is None
    der_file = tmp_path / "cert.der"
    der_file.write_bytes(der(certificate(EC_KEY, *WINDOWS[0])))
    assert read_validity(str(der_file)) is None
    assert read_validity("nul\0in the name") is None


def test_bad_base64_is_none() -> None:
    """Truncated or invalid base64 in the armour gives None."""
    text = pem(certificate(EC_KEY, *WINDOWS[0]))
    lines = text.splitlines(keepends=True)
    truncated = b"".join(lines[:-1])[:-3] + b"\n" + lines[-1]
    assert validity_of_pem(truncated) is None
    assert validity_of_pem(text.replace(b"M", b"!", 1)) is None
    assert validity_of_pem(b"-----BEGIN CERTIFICATE-----\n") is None


@pytest.mark.parametrize("key", [EC_KEY, RSA_KEY], ids=["ec", "rsa"])
def test_every_truncation_of_the_der_is_none(key: Key) -> None:
    """The DER cut at any length gives None, never an exception."""
    whole = der(certificate(key, *WINDOWS[2]))
    for length in range(len(whole)):
        assert validity_of_pem(armour(whole[:length])) is None, length


def test_every_truncation_inside_the_tbs_is_none() -> None:
    """Fields cut short inside well-formed outer SEQUENCEs give None."""
    fields = tbs_fields(b"\x17\x0d240101000000Z", b"\x18\x0f20550101000000Z")
    assert validity_of_pem(armour(wrap(fields))) == Validity(1704067200.0, 2682374400.0)
    for length in range(len(fields)):
        assert validity_of_pem(armour(wrap(fields[:length]))) is None, length


@given(st.binary(max_size=600))
def test_random_der_never_raises(body: bytes) -> None:
    """Random bytes base64-encoded in PEM armour give a Validity or None."""
    result = validity_of_pem(armour(body))
    assert result is None or isinstance(result, Validity)


@given(st.binary(max_size=600))
def test_random_armoured_text_never_raises(body: bytes) -> None:
    """Random bytes, not even base64, between the PEM lines give a Validity or None."""
    result = validity_of_pem(b"-----BEGIN CERTIFICATE-----" + body + b"-----END CERTIFICATE-----")
    assert result is None or isinstance(result, Validity)


GOOD_DER = der(certificate(EC_KEY, *WINDOWS[1]))


@given(st.integers(0, len(GOOD_DER) - 1), st.integers(0, 255))
def test_a_changed_byte_never_raises(index: int, value: int) -> None:
    """A real certificate with any one byte changed gives a Validity or None."""
    body = GOOD_DER[:index] + bytes([value]) + GOOD_DER[index + 1 :]
    result = validity_of_pem(armour(body))
    assert result is None or isinstance(result, Validity)
