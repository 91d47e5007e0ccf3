"""The web configuration files, checked before anything starts (and by --check-config):
read, their certificates loaded, and set against the flags that would contradict them.

The Go-compatible TLS flags and a file's `tls_server_config` both say how one port speaks
TLS: giving both is refused, naming both, rather than one silently winning.
"""

from __future__ import annotations

from collections.abc import Mapping

from exporter.settings.checks import ConfigError
from exporter.settings.config import Config
from exporter.settings.web_config import WebConfigError, load_web_config
from exporter.settings.web_tls import web_server_context

# Each web configuration setting, and the TLS flags of the same port.
_PORTS = {
    "web_config_file": ("server_cert", "server_key", "server_ca"),
    "http_input_web_config_file": ("http_input_cert", "http_input_key", "http_input_ca"),
}


def check_web_configs(config: Config, origins: Mapping[str, str]) -> None:
    """Raise ConfigError for a file that cannot be used, or that contradicts the flags."""
    settings = config.settings
    for name, tls_flags in _PORTS.items():
        path = getattr(settings, name)
        if not path:
            continue
        if name == "http_input_web_config_file" and config.http_input is None:
            raise ConfigError(f"{origins[name]}: there is no HTTP input (--http-input-address)")
        try:
            web = load_web_config(path)
            if web.tls is not None:
                web_server_context(web.tls, web.path)
        except WebConfigError as error:
            raise ConfigError(f"{origins[name]}: {error}") from None
        given = [flag for flag in tls_flags if getattr(settings, flag)]
        if web.tls is not None and given:
            raise ConfigError(
                f"{origins[name]} has a tls_server_config, and {origins[given[0]]} is set too: "
                "say how this port speaks TLS in one of them"
            )
