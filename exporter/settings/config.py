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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.core.labels import DEFAULT_LABELS, PRIORITY_NAME_LABEL, label_name_problem
from exporter.settings import values
from exporter.settings.addresses import parse_listen_address
from exporter.settings.durations import format_duration
from exporter.settings.tls import check_ca, check_dates, check_key_pair

ENV_PREFIX = "FALCO_EXPORTER_"


class ConfigError(Exception):
    """Invalid configuration. str() is the whole message for the user."""


def _as_yaml(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _setting(
    default: Any,  # noqa: ANN401
    parse: values.Parser,
    help_text: str,
    metavar: str = "VALUE",
    to_yaml: Callable[[Any], object] = _as_yaml,
) -> Any:  # noqa: ANN401 - a dataclass field
    """A field that carries how to parse it, describe it and write it back as YAML."""
    metadata = {"parse": parse, "help": help_text, "metavar": metavar, "to_yaml": to_yaml}
    return field(default=default, metadata=metadata)


def _duration(default: float, help_text: str, *, may_be_zero: bool = False) -> Any:  # noqa: ANN401
    """A duration setting: Go's form (30s, 2m) in and out."""
    parse = values.duration if may_be_zero else values.positive_duration
    return _setting(default, parse, help_text, "DURATION", format_duration)


def shown_default(setting: dataclasses.Field[Any]) -> str:
    """A setting's default as the README writes it: 30s, 1MiB, none, false."""
    value = setting.metadata["to_yaml"](setting.default)
    if value in ([], {}):
        return "none"
    if value == "":
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Config:
    """Every setting, with the Go exporter's defaults where it had the flag."""

    client_socket: str = _setting(
        "unix:///run/falco/falco.sock",
        values.string,
        "Falco's gRPC unix socket, used when --client-hostname is empty",
        "URL",
    )
    client_hostname: tuple[str, ...] = _setting(
        (),
        values.hostnames,
        "Falco's gRPC host, or host:port; repeat for several Falcos; "
        "non-empty switches to TCP with mutual TLS",
        "HOST",
    )
    client_port: int = _setting(5060, values.port, "Falco's gRPC TCP port", "PORT")
    client_cert: str = _setting(
        "/etc/falco/certs/client.crt",
        values.string,
        "client certificate for mutual TLS to Falco",
        "PATH",
    )
    client_key: str = _setting(
        "/etc/falco/certs/client.key",
        values.string,
        "client private key for mutual TLS to Falco",
        "PATH",
    )
    client_ca: str = _setting(
        "/etc/falco/certs/ca.crt",
        values.string,
        "CA that signed Falco's server certificate",
        "PATH",
    )
    targets: tuple[str, ...] = _setting(
        (),
        values.targets,
        "more Falcos to subscribe to, as host:port or unix:///path; repeatable",
        "TARGET",
    )
    discover_dns: str = _setting(
        "",
        values.dns_name,
        "NAME:PORT of a headless Service; subscribe to every address it resolves to",
        "NAME:PORT",
    )
    discover_interval: float = _duration(30.0, "how often --discover-dns resolves the name again")
    ready_when: str = _setting(
        "any",
        values.choice("any", "all"),
        "ready when any Falco target is connected, or only when all are",
        "any|all",
    )
    certificate_check_interval: float = _duration(
        5.0, "how often the client certificate files are checked for changes (rotation)"
    )
    client_tls_server_name: str = _setting(
        "",
        values.string,
        "name to verify in Falco's certificate when Falco is reached by another name or an IP",
        "NAME",
    )
    listen_address: str = _setting(
        ":9376", values.listen_address, "address serving /metrics, /livez, /readyz and /", "ADDR"
    )
    probes_listen_address: str = _setting(
        ":19376", values.listen_address, "address serving /liveness and /readiness", "ADDR"
    )
    server_ca: str = _setting(
        "",
        values.string,
        "CA for client certificates on /metrics (requires scrapers to present one)",
        "PATH",
    )
    server_cert: str = _setting("", values.string, "certificate to serve /metrics over TLS", "PATH")
    server_key: str = _setting("", values.string, "private key to serve /metrics over TLS", "PATH")
    http_input_address: str = _setting(
        "",
        values.optional_listen_address,
        "address to accept Falco's http_output POSTs on, e.g. :2801 (off when empty)",
        "ADDR",
    )
    http_input_cert: str = _setting(
        "", values.string, "certificate to serve the HTTP input over TLS", "PATH"
    )
    http_input_key: str = _setting(
        "", values.string, "private key for the HTTP input's TLS", "PATH"
    )
    http_input_ca: str = _setting(
        "",
        values.string,
        "CA for client certificates on the HTTP input (Falco's http_output.mtls)",
        "PATH",
    )
    http_input_max_body: int = _setting(
        1024 * 1024,
        values.size,
        "largest POST body accepted, after gzip decompression",
        "SIZE",
        values.format_size,
    )
    http_input_read_timeout: float = _duration(
        10.0,
        "a request's headers and body must arrive within this; else 408 and the "
        "connection is closed",
    )
    http_input_idle_timeout: float = _duration(
        300.0, "close a keep-alive connection of the HTTP input after this long without a request"
    )
    drop_labels: tuple[str, ...] = _setting(
        (),
        values.text_list,
        "default labels to leave out of falco_events, e.g. k8s_pod_name",
        "LABEL",
    )
    extra_labels: tuple[tuple[str, str], ...] = _setting(
        (),
        values.label_map,
        "more labels from output fields, as label_name=output.field (YAML: a mapping); repeatable",
        "NAME=FIELD",
        dict,
    )
    priority_name_label: bool = _setting(
        False, values.boolean, "add a priority_name label (Warning, ...) beside the number", "BOOL"
    )
    recent_alerts: int = _setting(
        0,
        values.count,
        "keep the last N alerts, output lines included, for the live page at / (0: off); "
        "never on /metrics",
        "N",
    )
    max_series: int = _setting(
        10_000,
        values.count,
        "most falco_events series; past it new series are folded into overflow series "
        "(0: no limit)",
        "N",
    )
    series_ttl: float = _duration(
        0.0, "remove a series that has not grown for this long (0: never)", may_be_zero=True
    )
    timeout: float = _duration(
        120.0,
        "log an error if no gRPC target is connected after this long (0: never); never exits",
        may_be_zero=True,
    )
    transport: str = _setting(
        "get",
        values.choice("get", "sub"),
        "how to read Falco's queue: `get` drains it repeatedly (fastest), `sub` holds one stream",
        "get|sub",
    )
    poll_interval: float = _duration(
        0.05, "how often to ask Falco's subscription for queued events while idle"
    )
    reconnect_backoff_initial: float = _duration(0.5, "first reconnect delay cap (jittered)")
    reconnect_backoff_max: float = _duration(30.0, "largest reconnect delay (jittered)")
    keepalive_time: float = _duration(
        10.0, "gRPC keepalive ping interval on the connection to Falco"
    )
    keepalive_timeout: float = _duration(
        5.0, "how long to wait for a keepalive answer before reconnecting"
    )
    event_loop: str = _setting(
        "auto",
        values.choice("auto", "uvloop", "asyncio"),
        "event loop: `auto` runs uvloop when it is installed, else asyncio's own; `uvloop` "
        "refuses to start without it",
        "auto|uvloop|asyncio",
    )
    log_level: str = _setting(
        "info",
        values.choice("debug", "info", "warning", "error"),
        "log level",
        "debug|info|warning|error",
    )
    log_format: str = _setting(
        "auto",
        values.choice("auto", "json", "console"),
        "json, console, or auto (JSON unless stdout is a terminal)",
        "auto|json|console",
    )

    @property
    def uses_tcp(self) -> bool:
        """True when some Falco is reached over TCP with mutual TLS."""
        return bool(
            self.client_hostname
            or self.discover_dns
            or any(not t.startswith("unix://") for t in self.targets)
        )

    def summary(self) -> dict[str, str]:
        """Where alerts come from and where they are served, in a few words for a person."""
        inputs = [f"gRPC {host}" for host in self.client_hostname]
        inputs += [f"gRPC {target}" for target in self.targets]
        if self.discover_dns:
            inputs.append(f"gRPC to every address of {self.discover_dns}")
        if self.http_input_address:
            tls = " (TLS)" if self.http_input_cert else ""
            inputs.append(f"HTTP input {self.http_input_address}{tls}")
        if not inputs:
            inputs.append(f"gRPC {self.client_socket}")
        return {
            "inputs": ", ".join(inputs),
            "metrics": self.listen_address + (" (TLS)" if self.server_cert else ""),
            "probes": self.probes_listen_address,
        }

    def certificate_files(self) -> dict[str, str]:
        """Every certificate file the exporter holds, by role (keys are not certificates)."""
        roles = {
            "client": self.client_cert if self.uses_tcp else "",
            "client_ca": self.client_ca if self.uses_tcp else "",
            "server": self.server_cert,
            "server_ca": self.server_ca,
            "http_input": self.http_input_cert,
            "http_input_ca": self.http_input_ca,
        }
        return {role: path for role, path in roles.items() if path}

    def effective(self) -> dict[str, object]:
        """The settings as YAML would write them, durations in Go form."""
        values: dict[str, object] = {}
        for setting in dataclasses.fields(self):
            values[setting.name] = setting.metadata["to_yaml"](getattr(self, setting.name))
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
        _check_certificates(config, origins, "client")
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
    _check_certificates(config, origins, prefix)


def _check_certificates(config: Config, origins: Mapping[str, str], prefix: str) -> None:
    """Load the set as TLS will: a bad file is named by its flag now, not at a handshake."""
    cert, key, ca = (f"{prefix}_cert", f"{prefix}_key", f"{prefix}_ca")
    try:
        check_key_pair(getattr(config, cert), getattr(config, key))
    except ValueError as error:
        raise ConfigError(f"{origins[cert]} and {origins[key]}: {error}") from None
    for name in (cert, ca):
        if not getattr(config, name):
            continue
        try:
            if name == ca:
                check_ca(getattr(config, ca))
            check_dates(getattr(config, name))
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
