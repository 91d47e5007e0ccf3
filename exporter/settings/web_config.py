"""The Prometheus exporter-toolkit's web configuration file (`--web.config.file`), read as
the toolkit reads it: the same keys, the same meanings, its defaults (docs/web-config.md).

Where Python's ssl cannot do what a key asks, the key is refused with the reason, never
ignored in silence; a key the toolkit itself ignores (`http2`, which needs HTTP/2, and
`prefer_server_cipher_suites`, which Go ignores since 1.17) is accepted and ignored. An
unknown key is refused. Every error names the key's path and the file:
`tls_server_config.client_auth_type in /etc/web.yml: ...`. Relative paths are read from
the file's own folder, as the toolkit does.

This module reads and checks the file; web_tls.py makes its TLS context.
"""

from __future__ import annotations

import importlib.util
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from exporter.settings import web_words
from exporter.settings.durations import parse_duration
from exporter.settings.web_words import ClientAuth

BCRYPT_HINT = "pip install 'falco-exporter[webconfig]'"
_BCRYPT_HASH = re.compile(rb"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_MIN_COST, _MAX_COST = 4, 31


class WebConfigError(ValueError):
    """The file cannot be used; str() names the key's path and the file."""


@dataclass(frozen=True)
class WebTls:
    """`tls_server_config`, checked; files as absolute paths, inline PEM as given."""

    cert_file: str
    key_file: str
    cert: str
    key: str
    client_ca_file: str
    client_ca: str
    client_auth: ClientAuth
    allowed_sans: tuple[str, ...]
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    ciphers: tuple[str, ...]  # OpenSSL's names, TLS 1.2 and older; () for OpenSSL's own
    curve: str  # OpenSSL's name; "" for OpenSSL's own list

    @property
    def files(self) -> tuple[str, ...]:
        """Every file it names, for a watch of their contents."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


@dataclass(frozen=True)
class RateLimit:
    """`rate_limit`: a token bucket over every request of the listener."""

    interval: float  # seconds between two requests, on average
    burst: int


@dataclass(frozen=True)
class WebConfig:
    """One web configuration file, checked."""

    path: str
    tls: WebTls | None
    headers: tuple[tuple[str, str], ...]
    users: tuple[tuple[str, str], ...]  # user name, bcrypt hash
    rate_limit: RateLimit | None

    @property
    def files(self) -> tuple[str, ...]:
        """The file itself and every file it names: what a reload watches."""
        return (self.path, *(self.tls.files if self.tls else ()))


def load_web_config(path: str) -> WebConfig:
    """Read and check the file; WebConfigError names the key and the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise WebConfigError(f"cannot read {path}: {error}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise WebConfigError(f"{path} is not valid YAML: {error}") from None
    reader = _Reader(path)
    top = reader.mapping(document if document is not None else {}, "")
    tls = _tls(reader, reader.mapping(top.get("tls_server_config") or {}, "tls_server_config"))
    http = reader.mapping(top.get("http_server_config") or {}, "http_server_config")
    if "http2" in http and not isinstance(http["http2"], bool):
        raise reader.error("http_server_config.http2", "expected true or false")
    return WebConfig(
        path=str(Path(path).absolute()),
        tls=tls,
        headers=_headers(reader, http.get("headers") or {}),
        users=_users(reader, top.get("basic_auth_users") or {}),
        rate_limit=_rate_limit(reader, reader.mapping(top.get("rate_limit") or {}, "rate_limit")),
    )


class _Reader:
    """Typed reads of the document, each error naming its key path and the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.folder = Path(path).absolute().parent

    def error(self, key: str, problem: str) -> WebConfigError:
        return WebConfigError(f"{key} in {self.path}: {problem}")

    def mapping(self, value: object, key: str) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.error(key or "the document", "expected a mapping")
        allowed = web_words.KEYS.get(key)
        for name in value:
            if not isinstance(name, str):
                raise self.error(f"{key}.{name}" if key else str(name), "keys must be text")
            if allowed is not None and name not in allowed:
                where = f"{key}.{name}" if key else name
                raise self.error(where, f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def text(self, section: Mapping[str, object], key: str, where: str) -> str:
        value = section.get(key, "")
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(f"{where}.{key}", f"expected text, got {type(value).__name__}")
        return value

    def file(self, section: Mapping[str, object], key: str, where: str) -> str:
        """A path, relative to the file's folder when not absolute (the toolkit's rule)."""
        value = self.text(section, key, where)
        return str(self.folder / value) if value and not os.path.isabs(value) else value

    def words(self, section: Mapping[str, object], key: str, where: str) -> list[str]:
        value = section.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(f"{where}.{key}", "expected a list of text")
        return value


def _tls(reader: _Reader, section: dict[str, object]) -> WebTls | None:
    where = "tls_server_config"
    read, file = reader.text, reader.file
    names = ("cert_file", "key_file", "client_ca_file")
    cert_file, key_file, ca_file = (file(section, name, where) for name in names)
    cert, key, ca = (read(section, name, where) for name in ("cert", "key", "client_ca"))
    auth_word = read(section, "client_auth_type", where)
    # The toolkit's test of "TLS is on": any of these set; else the port is plain HTTP.
    if not any((cert_file, key_file, ca_file, cert, key, ca, auth_word)):
        return None
    for inline, named in ((cert, "cert_file"), (key, "key_file"), (ca, "client_ca_file")):
        if inline and section.get(named):
            name = named.removesuffix("_file")
            raise reader.error(f"{where}.{name}", f"give {name} or {named}, not both")
    if not (cert_file or cert):
        raise reader.error(where, "missing one of cert or cert_file")
    if not (key_file or key):
        raise reader.error(where, "missing one of key or key_file")
    auth = _client_auth(reader, auth_word, bool(ca_file or ca))
    sans = tuple(reader.words(section, "client_allowed_sans", where))
    if sans and auth is not ClientAuth.REQUIRE_AND_VERIFY:
        raise reader.error(
            f"{where}.client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert"
        )
    low = _version(reader, section, "min_version", "TLS12")
    high = _version(reader, section, "max_version", "TLS13")
    if low > high:
        raise reader.error(f"{where}.min_version", "is above max_version")
    if not isinstance(section.get("prefer_server_cipher_suites", True), bool):
        raise reader.error(f"{where}.prefer_server_cipher_suites", "expected true or false")
    return WebTls(
        cert_file, key_file, cert, key, ca_file, ca, auth, sans, low, high,
        _ciphers(reader, reader.words(section, "cipher_suites", where), low),
        _curve(reader, reader.words(section, "curve_preferences", where)),
    )  # fmt: skip


def _client_auth(reader: _Reader, word: str, has_ca: bool) -> ClientAuth:
    key = "tls_server_config.client_auth_type"
    try:
        auth = ClientAuth(word or ClientAuth.NONE)
    except ValueError:
        known = ", ".join(a.value for a in ClientAuth if a is not ClientAuth.REQUIRE_ANY_OLD)
        raise reader.error(key, f"{word!r} is not one of {known}") from None
    if auth in web_words.UNVERIFIED:
        raise reader.error(
            key,
            f"{word} accepts a client certificate without verifying it, which Python's ssl "
            f"cannot do: {web_words.UNVERIFIED[auth]}",
        )
    if has_ca and auth is ClientAuth.NONE:
        raise reader.error(key, "a client CA is given without a client auth policy")
    if not has_ca and auth is not ClientAuth.NONE:
        raise reader.error(key, f"{word} needs client_ca_file (or client_ca) to verify against")
    return auth


def _version(
    reader: _Reader, section: Mapping[str, object], key: str, default: str
) -> ssl.TLSVersion:
    word = reader.text(section, key, "tls_server_config") or default
    if word not in web_words.TLS_VERSIONS:
        raise reader.error(
            f"tls_server_config.{key}",
            f"unknown TLS version {word!r} ({', '.join(web_words.TLS_VERSIONS)})",
        )
    return web_words.TLS_VERSIONS[word]


def _ciphers(reader: _Reader, names: list[str], low: ssl.TLSVersion) -> tuple[str, ...]:
    key = "tls_server_config.cipher_suites"
    for name in names:
        if name not in web_words.CIPHERS and name not in web_words.TLS13_CIPHERS:
            raise reader.error(key, f"unknown cipher {name!r} (Go's tls.CipherSuites() names)")
    chosen = tuple(web_words.CIPHERS[name] for name in names if name in web_words.CIPHERS)
    if names and not chosen and low < ssl.TLSVersion.TLSv1_3:
        raise reader.error(
            key, "only TLS 1.3 suites, which cannot be chosen: TLS 1.2 would have no cipher"
        )
    return chosen


def _curve(reader: _Reader, names: list[str]) -> str:
    key = "tls_server_config.curve_preferences"
    for name in names:
        if name not in web_words.CURVES:
            raise reader.error(key, f"unknown curve {name!r} ({', '.join(web_words.CURVES)})")
    if len(names) > 1:
        raise reader.error(
            key, "Python's ssl sets one curve only: give one, or none for OpenSSL's own list"
        )
    return web_words.CURVES[names[0]] if names else ""


def _headers(reader: _Reader, headers: object) -> tuple[tuple[str, str], ...]:
    key = "http_server_config.headers"
    if not isinstance(headers, dict):
        raise reader.error(key, "expected a mapping of header names to values")
    pairs = []
    for name, value in headers.items():
        if name not in web_words.HEADERS:
            raise reader.error(
                f"{key}.{name}",
                f"cannot be set; the toolkit sets only {', '.join(web_words.HEADERS)}",
            )
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise reader.error(f"{key}.{name}", "expected one line of text")
        allowed = web_words.HEADERS[name]
        if allowed is not None and value not in allowed:
            raise reader.error(f"{key}.{name}", f"{value!r} is not one of {', '.join(allowed)}")
        if value:  # the toolkit: unset if blank
            pairs.append((name, value))
    return tuple(pairs)


def _users(reader: _Reader, users: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(users, dict):
        raise reader.error("basic_auth_users", "expected a mapping of user names to bcrypt hashes")
    pairs = []
    for name, hashed in users.items():
        key = f"basic_auth_users.{name}"
        if not isinstance(name, str) or not isinstance(hashed, str):
            raise reader.error(key, "expected a user name and its bcrypt hash, as text")
        match = _BCRYPT_HASH.fullmatch(hashed.encode())
        if match is None or not _MIN_COST <= int(match.group(1)) <= _MAX_COST:
            raise reader.error(key, "not a bcrypt hash ($2y$10$..., e.g. from htpasswd -nBC 10)")
        pairs.append((name, hashed))
    if pairs and importlib.util.find_spec("bcrypt") is None:
        raise reader.error(
            "basic_auth_users", f"needs bcrypt, which is not installed: {BCRYPT_HINT}"
        )
    return tuple(pairs)


def _rate_limit(reader: _Reader, section: dict[str, object]) -> RateLimit | None:
    if not section:
        return None
    raw, burst = section.get("interval", "0s"), section.get("burst", 0)
    if not isinstance(raw, str):
        raise reader.error("rate_limit.interval", "expected a duration such as 1s or 100ms")
    try:
        interval = parse_duration(raw)
    except ValueError as error:
        raise reader.error("rate_limit.interval", str(error)) from None
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
        raise reader.error("rate_limit.burst", "expected a whole number, 0 or more")
    return RateLimit(interval, burst) if interval > 0 else None
