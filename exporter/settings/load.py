"""Loading the settings: defaults < YAML file (--config) < environment < flags.

A bad value raises ConfigError whose message names the setting the way the user wrote it
(a flag, a variable, or a key of a file), so the command line can print it and exit 2.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from exporter.settings.checks import ConfigError, check_settings
from exporter.settings.config import Config, build_config
from exporter.settings.schema import KEYS, SETTINGS, Settings, env_name, flag_name
from exporter.settings.web_checks import check_web_configs

__all__ = ["ConfigError", "load_config"]


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
    for key in KEYS:
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
    settings = Settings(**values)
    config = build_config(settings)
    check_settings(config, origins)
    check_web_configs(config, origins)
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
        if key not in KEYS:
            hint = difflib.get_close_matches(str(key), KEYS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{key} in {path}: unknown setting{suggestion}")
    return document
