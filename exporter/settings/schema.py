"""Every setting, declared once: its flag, environment variable and YAML key derive from
its name; its parser, help text and default sit beside it.

These are the flat, Go-compatible names a user writes (`--client-cert`,
`FALCO_EXPORTER_CLIENT_CERT`, `client_cert:`). config.py groups them into the tree the
exporter reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from exporter.settings import values
from exporter.settings.choices import EventLoopChoice, LogFormat, LogLevel, ReadyWhen, Transport
from exporter.settings.fields import (
    ENV_PREFIX,
    choice_setting,
    duration_setting,
    env_name,
    flag_name,
    path_setting,
    setting,
    shown_default,
)

__all__ = ["ENV_PREFIX", "KEYS", "SETTINGS", "Settings", "env_name", "flag_name", "shown_default"]


@dataclass(frozen=True)
class Settings:
    """Every setting as the user wrote it, parsed: one field per flag, variable and YAML key.

    The Go exporter's defaults where it had the flag. The rest of the exporter reads the
    tree that config.build_config makes of these, never these fields.
    """

    client_socket: str = setting(
        "unix:///run/falco/falco.sock",
        values.string,
        "Falco's gRPC unix socket, used when --client-hostname is empty",
        "URL",
    )
    client_hostname: tuple[str, ...] = setting(
        (),
        values.hostnames,
        "Falco's gRPC host, or host:port; repeat for several Falcos; "
        "non-empty switches to TCP with mutual TLS",
        "HOST",
    )
    client_port: int = setting(5060, values.port, "Falco's gRPC TCP port", "PORT")
    client_cert: str = path_setting(
        "client certificate for mutual TLS to Falco", "/etc/falco/certs/client.crt"
    )
    client_key: str = path_setting(
        "client private key for mutual TLS to Falco", "/etc/falco/certs/client.key"
    )
    client_ca: str = path_setting(
        "CA that signed Falco's server certificate", "/etc/falco/certs/ca.crt"
    )
    targets: tuple[str, ...] = setting(
        (),
        values.targets,
        "more Falcos to subscribe to, as host:port or unix:///path; repeatable",
        "TARGET",
    )
    discover_dns: str = setting(
        "",
        values.dns_name,
        "NAME:PORT of a headless Service; subscribe to every address it resolves to",
        "NAME:PORT",
    )
    discover_interval: float = duration_setting(
        30.0, "how often --discover-dns resolves the name again"
    )
    ready_when: ReadyWhen = choice_setting(
        ReadyWhen.ANY,
        "ready when any Falco target is connected, or only when all are",
        "any|all",
    )
    certificate_check_interval: float = duration_setting(
        5.0, "how often the client certificate files are checked for changes (rotation)"
    )
    client_tls_server_name: str = setting(
        "",
        values.string,
        "name to verify in Falco's certificate when Falco is reached by another name or an IP",
        "NAME",
    )
    listen_address: str = setting(
        ":9376", values.listen_address, "address serving /metrics, /livez, /readyz and /", "ADDR"
    )
    probes_listen_address: str = setting(
        ":19376", values.listen_address, "address serving /liveness and /readiness", "ADDR"
    )
    server_ca: str = path_setting(
        "CA for client certificates on /metrics (requires scrapers to present one)"
    )
    server_cert: str = path_setting("certificate to serve /metrics over TLS")
    server_key: str = path_setting("private key to serve /metrics over TLS")
    web_config_file: str = path_setting(
        "the Prometheus exporter-toolkit's web configuration for the main port: TLS, "
        "basic_auth_users, headers (docs/web-config.md)"
    )
    http_input_web_config_file: str = path_setting(
        "a web configuration for the HTTP input (off when empty: Falco posts without credentials)"
    )
    web_config_check_interval: float = duration_setting(
        5.0, "how often the web configuration files are checked for changes (and re-read)"
    )
    http_input_address: str = setting(
        "",
        values.optional_listen_address,
        "address to accept Falco's http_output POSTs on, e.g. :2801 (off when empty)",
        "ADDR",
    )
    http_input_cert: str = path_setting("certificate to serve the HTTP input over TLS")
    http_input_key: str = path_setting("private key for the HTTP input's TLS")
    http_input_ca: str = path_setting(
        "CA for client certificates on the HTTP input (Falco's http_output.mtls)"
    )
    http_input_max_body: int = setting(
        1024 * 1024,
        values.size,
        "largest POST body accepted, after gzip decompression",
        "SIZE",
        values.format_size,
    )
    http_input_max_connections: int = setting(
        8192,
        values.positive_count,
        "most connections the HTTP input holds at once (each Falco keeps one); past it the "
        "oldest idle one is closed, or a new one refused",
        "N",
    )
    http_input_max_connections_per_peer: int = setting(
        16, values.positive_count, "most connections the HTTP input holds from one address", "N"
    )
    http_input_read_timeout: float = duration_setting(
        10.0,
        "a request's headers and body must arrive within this; else 408 and the "
        "connection is closed",
    )
    http_input_idle_timeout: float = duration_setting(
        300.0, "close a keep-alive connection of the HTTP input after this long without a request"
    )
    forward_url: str = setting(
        "",
        values.forward_url,
        "send each alert the HTTP input accepted on to this http(s) URL too, one POST per "
        "alert, as Falco's http_output would (e.g. falcosidekick's); queued, never delaying Falco",
        "URL",
    )
    forward_queue_size: int = setting(
        8 * 1024 * 1024,
        values.size,
        "most alert bytes --forward-url holds while the downstream is slow or away; past it "
        "new alerts are dropped from the forward (counted), never from falco_events",
        "SIZE",
        values.format_size,
    )
    file_input: str = path_setting(
        "read Falco's file_output (JSON lines) from this file, durably: after any restart "
        "counting resumes where the last scrape left it, and what was read is freed from disk"
    )
    drop_labels: tuple[str, ...] = setting(
        (),
        values.text_list,
        "default labels to leave out of falco_events, e.g. k8s_pod_name",
        "LABEL",
    )
    extra_labels: tuple[tuple[str, str], ...] = setting(
        (),
        values.label_map,
        "more labels from output fields, as label_name=output.field (YAML: a mapping); repeatable",
        "NAME=FIELD",
        dict,
    )
    priority_name_label: bool = setting(
        False, values.boolean, "add a priority_name label (Warning, ...) beside the number", "BOOL"
    )
    workload_label: bool = setting(
        False, values.boolean, "add a k8s_workload label: the pod's Deployment, DaemonSet, "
        "StatefulSet, ... from k8smeta fields or the pod name (docs/cardinality.md)", "BOOL",
    )  # fmt: skip
    recent_alerts: int = setting(
        0,
        values.count,
        "keep the last N alerts, output lines included, for the live page at / (0: off); "
        "never on /metrics",
        "N",
    )
    max_series: int = setting(
        10_000,
        values.count,
        "most falco_events series; past it the least recently updated series of a lower "
        "priority makes room, else the new one folds into its priority's overflow series "
        "(0: no limit)",
        "N",
    )
    max_series_per_rule: str = setting(
        "10%",
        values.share,
        "most falco_events series one rule may hold, as a count or a share of --max-series; "
        "past it that rule's new series fold into one per priority that keeps the rule "
        "(0: no limit)",
        "N|P%",
    )
    max_series_per_host: str = setting(
        "25%",
        values.share,
        "most series one hostname may hold (count or share of --max-series); past it they fold "
        "into one per priority that keeps the host (0: no limit)",
        "N|P%",
    )
    max_series_per_pod: str = setting(
        "2%",
        values.share,
        "most series one namespace and pod may hold (count or share of --max-series); past it "
        "they fold into one per priority that keeps the pod (0: no limit)",
        "N|P%",
    )
    max_label_length: int = setting(
        256,
        values.count,
        "longest label value of falco_events, in characters; a longer one is cut, ending in "
        "'…[truncated]' (0: no limit)",
        "N",
    )
    delivery_accounting: bool = setting(
        True, values.boolean, "count the alerts each Falco raised that never reached us "
        "(false where replicas share each Falco's posts: docs/delivery.md)", "BOOL",
    )  # fmt: skip
    delivery_max_falcos: int = setting(
        10_000, values.positive_count, "most Falcos (hostnames) accounted for; past it "
        "their alerts are counted, not accounted for", "N",
    )  # fmt: skip
    series_ttl: float = duration_setting(
        0.0, "remove a series that has not grown for this long (0: never)", may_be_zero=True
    )
    timeout: float = duration_setting(
        120.0,
        "log an error if no gRPC target is connected after this long (0: never); never exits",
        may_be_zero=True,
    )
    transport: Transport = choice_setting(
        Transport.GET,
        "how to read Falco's queue: `get` drains it repeatedly (fastest), `sub` holds one stream",
        "get|sub",
    )
    poll_interval: float = duration_setting(
        0.05, "how often to ask Falco's subscription for queued events while idle"
    )
    reconnect_backoff_initial: float = duration_setting(0.5, "first reconnect delay cap (jittered)")
    reconnect_backoff_max: float = duration_setting(30.0, "largest reconnect delay (jittered)")
    keepalive_time: float = duration_setting(
        10.0, "gRPC keepalive ping interval on the connection to Falco"
    )
    keepalive_timeout: float = duration_setting(
        5.0, "how long to wait for a keepalive answer before reconnecting"
    )
    event_loop: EventLoopChoice = choice_setting(
        EventLoopChoice.AUTO,
        "event loop: `auto` runs uvloop when it is installed, else asyncio's own; `uvloop` "
        "refuses to start without it",
        "auto|uvloop|asyncio",
    )
    log_level: LogLevel = choice_setting(
        LogLevel.INFO,
        "log level",
        "debug|info|warning|error",
    )
    log_format: LogFormat = choice_setting(
        LogFormat.AUTO,
        "json, console, or auto (JSON unless stdout is a terminal)",
        "auto|json|console",
    )

    def effective(self) -> dict[str, object]:
        """The settings as YAML would write them, durations in Go form."""
        return {
            setting.name: setting.metadata["to_yaml"](getattr(self, setting.name))
            for setting in dataclasses.fields(self)
        }


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Settings)
KEYS = frozenset(s.name for s in SETTINGS)
