"""The exporter's configuration: one validated, immutable tree built once at start-up.

Layers, lowest first: defaults < YAML file (--config) < environment
(FALCO_EXPORTER_<KEY>) < command-line flags. Each setting is declared once, as a
field of Config; its flag, environment variable and YAML key derive from the name.
A bad value raises ConfigError whose message names the key the way the user wrote
it (a flag, a variable, or a key of a file), so the CLI can print it and exit 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.durations import format_duration, parse_duration
from exporter.labels import DEFAULT_LABELS, PRIORITY_NAME_LABEL, label_name_problem

ENV_PREFIX = "FALCO_EXPORTER_"


class ConfigError(Exception):
    """Invalid configuration. str() is the whole message for the user."""


Parser = Callable[[object], Any]


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {type(raw).__name__}")
    return raw


def _port(raw: object) -> int:
    number = _integer(raw)
    if not 1 <= number <= 65535:
        raise ValueError(f"{number} is not a port (1-65535)")
    return number


def _integer(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected a whole number, got a boolean")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass
    raise ValueError(f"{raw!r} is not a whole number")


def _duration(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a duration, got a boolean")
    seconds = float(raw) if isinstance(raw, int | float) else parse_duration(_text(raw))
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def _positive_duration(raw: object) -> float:
    seconds = _duration(raw)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def _optional_listen_address(raw: object) -> str:
    text = _text(raw).strip()
    if text:
        parse_listen_address(text)
    return text


def _listen_address(raw: object) -> str:
    parse_listen_address(_text(raw))
    return _text(raw)


def _text_list(raw: object) -> tuple[str, ...]:
    """A YAML list, a repeated flag, or comma-separated text (environment)."""
    items = raw if isinstance(raw, list | tuple) else [raw]
    values: list[str] = []
    for item in items:
        values.extend(part.strip() for part in _text(item).split(",") if part.strip())
    return tuple(values)


def _hostnames(raw: object) -> tuple[str, ...]:
    values = _text_list(raw)
    for value in values:
        split_host_port(value, default_port=1)
    return values


def _targets(raw: object) -> tuple[str, ...]:
    values = _text_list(raw)
    for value in values:
        if not value.startswith("unix://"):
            split_host_port(value, default_port=None)
    return values


def _dns_name(raw: object) -> str:
    value = _text(raw).strip()
    if value:
        split_host_port(value, default_port=None)
    return value


def split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """("falco", 5060) from "falco:5060", "falco" (with a default port) or "[fd00::1]:5060"."""
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"{text!r} has no host name")
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r} needs a port (host:port)")
        return host, default_port
    return host, _port(port_text)


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def _size(raw: object) -> int:
    """Bytes from 1048576, "1MiB", "512KiB" or "2MB"."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        number, unit = float(raw), ""
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", _text(raw))
        if match is None or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"{raw!r} is not a size (examples: 1048576, 1MiB, 512KiB)")
        number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _SIZE_UNITS[unit])
    if size < 1:
        raise ValueError("must be at least 1 byte")
    return size


def _boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = _text(raw).strip().lower()
    if text in {"true", "yes", "1", "on"}:
        return True
    if text in {"false", "no", "0", "off"}:
        return False
    raise ValueError(f"{raw!r} is not true or false")


def _count(raw: object) -> int:
    number = _integer(raw)
    if number < 0:
        raise ValueError("cannot be negative")
    return number


def _label_map(raw: object) -> tuple[tuple[str, str], ...]:
    """A YAML mapping, or name=field pairs (repeated flag, or commas in the environment)."""
    if isinstance(raw, dict):
        pairs = [(str(name), _text(value)) for name, value in raw.items()]
    else:
        pairs = []
        for item in _text_list(raw):
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise ValueError(f"{item!r} is not label_name=output.field")
            pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def _choice(*choices: str) -> Parser:
    def parse(raw: object) -> str:
        value = _text(raw).strip().lower()
        if value not in choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return value

    return parse


def parse_listen_address(text: str) -> tuple[str | None, int]:
    """Host and port of ":9376", "0.0.0.0:9376", "[::1]:9376"; host None means every interface."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} is not host:port (example: :9376)")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r} has no port number (example: :9376)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port (0-65535)")
    host = host.strip("[]")
    return (host or None), port


def _setting(
    default: Any,  # noqa: ANN401
    parse: Parser,
    help_text: str,
    metavar: str = "VALUE",
) -> Any:  # noqa: ANN401 - a dataclass field
    return field(default=default, metadata={"parse": parse, "help": help_text, "metavar": metavar})


@dataclass(frozen=True)
class Config:
    """Every setting, with the Go exporter's defaults where it had the flag."""

    client_socket: str = _setting(
        "unix:///run/falco/falco.sock",
        _text,
        "Falco's gRPC unix socket, used when --client-hostname is empty",
        "URL",
    )
    client_hostname: tuple[str, ...] = _setting(
        (),
        _hostnames,
        "Falco's gRPC host, or host:port; repeat for several Falcos; "
        "non-empty switches to TCP with mutual TLS",
        "HOST",
    )
    client_port: int = _setting(5060, _port, "Falco's gRPC TCP port", "PORT")
    client_cert: str = _setting(
        "/etc/falco/certs/client.crt", _text, "client certificate for mutual TLS to Falco", "PATH"
    )
    client_key: str = _setting(
        "/etc/falco/certs/client.key", _text, "client private key for mutual TLS to Falco", "PATH"
    )
    client_ca: str = _setting(
        "/etc/falco/certs/ca.crt", _text, "CA that signed Falco's server certificate", "PATH"
    )
    targets: tuple[str, ...] = _setting(
        (),
        _targets,
        "more Falcos to subscribe to, as host:port or unix:///path; repeatable",
        "TARGET",
    )
    discover_dns: str = _setting(
        "",
        _dns_name,
        "NAME:PORT of a headless Service; subscribe to every address it resolves to",
        "NAME:PORT",
    )
    discover_interval: float = _setting(
        30.0, _positive_duration, "how often --discover-dns resolves the name again", "DURATION"
    )
    ready_when: str = _setting(
        "any",
        _choice("any", "all"),
        "ready when any Falco target is connected, or only when all are",
        "any|all",
    )
    certificate_check_interval: float = _setting(
        5.0,
        _positive_duration,
        "how often the client certificate files are checked for changes (rotation)",
        "DURATION",
    )
    client_tls_server_name: str = _setting(
        "",
        _text,
        "name to verify in Falco's certificate when Falco is reached by another name or an IP",
        "NAME",
    )
    listen_address: str = _setting(
        ":9376", _listen_address, "address serving /metrics, /livez, /readyz and /", "ADDR"
    )
    probes_listen_address: str = _setting(
        ":19376", _listen_address, "address serving /liveness and /readiness", "ADDR"
    )
    server_ca: str = _setting(
        "",
        _text,
        "CA for client certificates on /metrics (requires scrapers to present one)",
        "PATH",
    )
    server_cert: str = _setting("", _text, "certificate to serve /metrics over TLS", "PATH")
    server_key: str = _setting("", _text, "private key to serve /metrics over TLS", "PATH")
    http_input_address: str = _setting(
        "",
        _optional_listen_address,
        "address to accept Falco's http_output POSTs on, e.g. :2801 (off when empty)",
        "ADDR",
    )
    http_input_cert: str = _setting(
        "", _text, "certificate to serve the HTTP input over TLS", "PATH"
    )
    http_input_key: str = _setting("", _text, "private key for the HTTP input's TLS", "PATH")
    http_input_ca: str = _setting(
        "",
        _text,
        "CA for client certificates on the HTTP input (Falco's http_output.mtls)",
        "PATH",
    )
    http_input_max_body: int = _setting(
        1024 * 1024, _size, "largest POST body accepted, after gzip decompression", "SIZE"
    )
    http_input_read_timeout: float = _setting(
        10.0,
        _positive_duration,
        "a request's headers and body must arrive within this; else 408 and the "
        "connection is closed",
        "DURATION",
    )
    http_input_idle_timeout: float = _setting(
        300.0,
        _positive_duration,
        "close a keep-alive connection of the HTTP input after this long without a request",
        "DURATION",
    )
    drop_labels: tuple[str, ...] = _setting(
        (),
        _text_list,
        "default labels to leave out of falco_events, e.g. k8s_pod_name",
        "LABEL",
    )
    extra_labels: tuple[tuple[str, str], ...] = _setting(
        (),
        _label_map,
        "more labels from output fields, as label_name=output.field (YAML: a mapping); repeatable",
        "NAME=FIELD",
    )
    priority_name_label: bool = _setting(
        False, _boolean, "add a priority_name label (Warning, ...) beside the number", "BOOL"
    )
    max_series: int = _setting(
        10_000,
        _count,
        "most falco_events series; past it new series are folded into overflow series "
        "(0: no limit)",
        "N",
    )
    series_ttl: float = _setting(
        0.0,
        _duration,
        "remove a series that has not grown for this long (0: never)",
        "DURATION",
    )
    timeout: float = _setting(
        120.0,
        _duration,
        "log an error if not connected to Falco after this long (0: never); never exits",
        "DURATION",
    )
    transport: str = _setting(
        "get",
        _choice("get", "sub"),
        "how to read Falco's queue: `get` drains it repeatedly (fastest), `sub` holds one stream",
        "NAME",
    )
    poll_interval: float = _setting(
        0.05,
        _positive_duration,
        "how often to ask Falco's subscription for queued events while idle",
        "DURATION",
    )
    reconnect_backoff_initial: float = _setting(
        0.5, _positive_duration, "first reconnect delay cap (jittered)", "DURATION"
    )
    reconnect_backoff_max: float = _setting(
        30.0, _positive_duration, "largest reconnect delay (jittered)", "DURATION"
    )
    keepalive_time: float = _setting(
        10.0,
        _positive_duration,
        "gRPC keepalive ping interval on the connection to Falco",
        "DURATION",
    )
    keepalive_timeout: float = _setting(
        5.0,
        _positive_duration,
        "how long to wait for a keepalive answer before reconnecting",
        "DURATION",
    )
    log_level: str = _setting(
        "info", _choice("debug", "info", "warning", "error"), "log level", "LEVEL"
    )
    log_format: str = _setting(
        "auto",
        _choice("auto", "json", "console"),
        "json, console, or auto (JSON unless stdout is a terminal)",
        "FORMAT",
    )

    @property
    def uses_tcp(self) -> bool:
        """True when some Falco is reached over TCP with mutual TLS."""
        return bool(
            self.client_hostname
            or self.discover_dns
            or any(not t.startswith("unix://") for t in self.targets)
        )

    def effective(self) -> dict[str, object]:
        """The settings as YAML would write them, durations in Go form."""
        values: dict[str, object] = {}
        for setting in dataclasses.fields(self):
            value = getattr(self, setting.name)
            is_duration = setting.metadata["metavar"] == "DURATION"
            if is_duration:
                value = format_duration(value)
            if setting.name == "extra_labels":
                value = dict(value)
            values[setting.name] = list(value) if isinstance(value, tuple) else value
        return values


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Config)
_KEYS = frozenset(s.name for s in SETTINGS)


def flag_name(key: str) -> str:
    """The command-line flag of a setting."""
    return "--" + key.replace("_", "-")


def env_name(key: str) -> str:
    """The environment variable of a setting."""
    return ENV_PREFIX + key.upper()


def load_config(
    flags: Mapping[str, object],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge the layers, parse every value, check cross-field rules; raise ConfigError."""
    raw: dict[str, tuple[object, str]] = {}
    if config_file:
        for key, value in _read_yaml(config_file).items():
            raw[key] = (value, f"{key} in {config_file}")
    env = os.environ if environ is None else environ
    for key in _KEYS:
        if env_name(key) in env:
            raw[key] = (env[env_name(key)], env_name(key))
    for key, value in flags.items():
        raw[key] = (value, flag_name(key))

    values: dict[str, Any] = {}
    origins = {s.name: f"{flag_name(s.name)} (default)" for s in SETTINGS}
    by_name = {s.name: s for s in SETTINGS}
    for key, (value, origin) in raw.items():
        try:
            values[key] = by_name[key].metadata["parse"](value)
        except ValueError as error:
            raise ConfigError(f"{origin}: {error}") from None
        origins[key] = origin
    config = Config(**values)
    _check(config, origins)
    return config


def _read_yaml(path: str) -> dict[str, object]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--config: cannot read {path}: {error}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--config: {path} is not valid YAML: {error}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of settings")
    for key in document:
        if key not in _KEYS:
            hint = difflib.get_close_matches(str(key), _KEYS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{key} in {path}: unknown setting{suggestion}")
    return document


def _check(config: Config, origins: Mapping[str, str]) -> None:
    if config.uses_tcp:
        for key in ("client_cert", "client_key", "client_ca"):
            _require_readable(getattr(config, key), origins[key], "TLS to Falco over TCP")
    _check_labels(config, origins)
    _check_tls_files(config, origins, "server", "TLS on /metrics")
    _check_tls_files(config, origins, "http_input", "TLS on the HTTP input")
    seen: dict[tuple[str | None, int], str] = {}
    for key in ("listen_address", "probes_listen_address", "http_input_address"):
        text = getattr(config, key)
        if not text:
            continue
        address = parse_listen_address(text)
        if address in seen and address[1] != 0:
            raise ConfigError(
                f"{origins[key]}: same address as {flag_name(seen[address])} ({text}); "
                "each listener needs its own port"
            )
        seen[address] = key


def _check_labels(config: Config, origins: Mapping[str, str]) -> None:
    for name in config.drop_labels:
        if name not in DEFAULT_LABELS:
            raise ConfigError(
                f"{origins['drop_labels']}: {name!r} is not a default label "
                f"({', '.join(DEFAULT_LABELS)})"
            )
    taken = [name for name in DEFAULT_LABELS if name not in config.drop_labels]
    if config.priority_name_label:
        taken.append(PRIORITY_NAME_LABEL)
    for name, output_field in config.extra_labels:
        problem = label_name_problem(name, taken)
        if problem:
            raise ConfigError(f"{origins['extra_labels']}: {problem}")
        if not output_field:
            raise ConfigError(f"{origins['extra_labels']}: {name!r} names no output field")
        taken.append(name)


def _check_tls_files(
    config: Config, origins: Mapping[str, str], prefix: str, needed_for: str
) -> None:
    """cert and key go together (the CA is optional); every file given must be readable."""
    files = {k: getattr(config, k) for k in (f"{prefix}_ca", f"{prefix}_cert", f"{prefix}_key")}
    if not any(files.values()):
        return
    for key in (f"{prefix}_cert", f"{prefix}_key"):
        if not files[key]:
            other = next(k for k in files if files[k])
            raise ConfigError(f"{flag_name(key)}: required when {flag_name(other)} is set")
    for key, path in files.items():
        if path:
            _require_readable(path, origins[key], needed_for)


def _require_readable(path: str, origin: str, needed_for: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            f"{origin}: cannot read {path} ({reason}), needed for {needed_for}"
        ) from None
