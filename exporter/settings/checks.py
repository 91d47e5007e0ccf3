"""Rules between settings, checked before anything starts.

Every message names each setting by where its value came from (`--server-cert`,
`FALCO_EXPORTER_SERVER_CERT`, `server_cert in exporter.yaml`); a setting left at its
default is named by its flag, with "(default)".
"""

from __future__ import annotations

from collections.abc import Mapping

from exporter.core.labels import (
    DEFAULT_LABELS,
    PRIORITY_NAME_LABEL,
    WORKLOAD_LABEL,
    label_name_problem,
)
from exporter.settings.addresses import parse_listen_address
from exporter.settings.config import Config
from exporter.settings.schema import flag_name
from exporter.settings.tls import check_ca, check_dates, check_key_pair

# The certificate sets: (cert, key, CA) keys, and what they are needed for.
_TLS_SETS = {
    "client": ("client_cert", "client_key", "client_ca", "TLS to Falco over TCP"),
    "server": ("server_cert", "server_key", "server_ca", "TLS on /metrics"),
    "http_input": ("http_input_cert", "http_input_key", "http_input_ca", "TLS on the HTTP input"),
}
_SHORTEST_LABEL_LIMIT = 32
_LISTENERS = ("listen_address", "probes_listen_address", "http_input_address")


class ConfigError(Exception):
    """Invalid configuration. str() is the whole message for the user."""


def check_settings(config: Config, origins: Mapping[str, str]) -> None:
    """Raise ConfigError for the first rule broken."""
    values = config.settings
    if config.grpc is not None and config.grpc.uses_tcp:
        cert, key, ca, needed_for = _TLS_SETS["client"]
        for name in (cert, key, ca):
            _require_readable(getattr(values, name), origins[name], needed_for)
        _check_certificates(values, origins, "client")
    _check_labels(config, origins)
    if 0 < values.max_label_length < _SHORTEST_LABEL_LIMIT:
        raise ConfigError(
            f"{origins['max_label_length']}: at least {_SHORTEST_LABEL_LIMIT} characters "
            "(or 0 for no limit), so that a cut value still says something"
        )
    for prefix in ("server", "http_input"):
        _check_tls_set(config, origins, prefix)
    seen: dict[tuple[str | None, int], str] = {}
    for name in _LISTENERS:
        text = getattr(values, name)
        if not text:
            continue
        address = parse_listen_address(text)
        if address in seen and address[1] != 0:
            raise ConfigError(
                f"{origins[name]}: same address as {origins[seen[address]]} ({text}); "
                "each listener needs its own port"
            )
        seen[address] = name
    _check_forward(config, origins)


_OWN_HOSTS = frozenset({None, "", "127.0.0.1", "::1", "localhost", "0.0.0.0", "::"})  # noqa: S104


def _check_forward(config: Config, origins: Mapping[str, str]) -> None:
    """A forward needs the HTTP input, and must not point back at it: each alert would be
    taken again and sent again, forever."""
    forward = config.forward
    if forward is None:
        return
    if config.http_input is None:
        raise ConfigError(
            f"{origins['forward_url']}: forwards what the HTTP input accepts; "
            "give --http-input-address too"
        )
    host, port = parse_listen_address(config.http_input.address)
    if forward.port == port and forward.host in _OWN_HOSTS | {host}:
        raise ConfigError(
            f"{origins['forward_url']}: points at this exporter's own HTTP input "
            f"({origins['http_input_address']}); every alert would come back, forever"
        )


def _check_labels(config: Config, origins: Mapping[str, str]) -> None:
    series = config.series
    for name in series.drop_labels:
        if name not in DEFAULT_LABELS:
            raise ConfigError(
                f"{origins['drop_labels']}: {name!r} is not a default label "
                f"({', '.join(DEFAULT_LABELS)})"
            )
    taken = [name for name in DEFAULT_LABELS if name not in series.drop_labels]
    if series.priority_name_label:
        taken.append(PRIORITY_NAME_LABEL)
    if series.workload_label:
        taken.append(WORKLOAD_LABEL)
    for name, output_field in series.extra_labels:
        problem = label_name_problem(name, taken)
        if problem:
            raise ConfigError(f"{origins['extra_labels']}: {problem}")
        if not output_field:
            raise ConfigError(f"{origins['extra_labels']}: {name!r} names no output field")
        taken.append(name)


def _check_tls_set(config: Config, origins: Mapping[str, str], prefix: str) -> None:
    """cert and key go together (the CA is optional); every file given must be readable."""
    cert, key, ca, needed_for = _TLS_SETS[prefix]
    files = {name: getattr(config.settings, name) for name in (ca, cert, key)}
    if not any(files.values()):
        return
    for name in (cert, key):
        if not files[name]:
            other = next(n for n in files if files[n])
            raise ConfigError(f"{flag_name(name)}: required when {origins[other]} is set")
    for name, path in files.items():
        if path:
            _require_readable(path, origins[name], needed_for)
    _check_certificates(config.settings, origins, prefix)


def _check_certificates(values: object, origins: Mapping[str, str], prefix: str) -> None:
    """Load the set as TLS will: a bad file is named by its origin now, not at a handshake."""
    cert, key, ca, _ = _TLS_SETS[prefix]
    try:
        check_key_pair(getattr(values, cert), getattr(values, key))
    except ValueError as error:
        raise ConfigError(f"{origins[cert]} and {origins[key]}: {error}") from None
    for name in (cert, ca):
        path = getattr(values, name)
        if not path:
            continue
        try:
            if name == ca:
                check_ca(path)
            check_dates(path)
        except ValueError as error:
            raise ConfigError(f"{origins[name]}: {error}") from None


def _require_readable(path: str, origin: str, needed_for: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            f"{origin}: cannot read {path} ({reason}), needed for {needed_for}"
        ) from None
