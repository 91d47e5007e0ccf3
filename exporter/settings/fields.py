"""How a setting is declared: a dataclass field that carries its parser, its help text, its
metavar and how it is written back as YAML, and the names it derives (flag, variable).

schema.py declares every setting with these; the CLI, the loader and the docs test read
the metadata back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import field
from enum import StrEnum
from typing import Any

from exporter.settings import values
from exporter.settings.durations import format_duration

ENV_PREFIX = "FALCO_EXPORTER_"


def _as_yaml(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def setting(
    default: Any,  # noqa: ANN401
    parse: values.Parser,
    help_text: str,
    metavar: str = "VALUE",
    to_yaml: Callable[[Any], object] = _as_yaml,
) -> Any:  # noqa: ANN401 - a dataclass field
    """A field that carries how to parse it, describe it and write it back as YAML."""
    metadata = {"parse": parse, "help": help_text, "metavar": metavar, "to_yaml": to_yaml}
    return field(default=default, metadata=metadata)


def duration_setting(default: float, help_text: str, *, may_be_zero: bool = False) -> Any:  # noqa: ANN401
    """A duration setting: Go's form (30s, 2m) in and out."""
    parse = values.duration if may_be_zero else values.positive_duration
    return setting(default, parse, help_text, "DURATION", format_duration)


def choice_setting(default: StrEnum, help_text: str, metavar: str) -> Any:  # noqa: ANN401
    """One word of an enum's; the metavar lists them."""
    return setting(default, values.choice(type(default)), help_text, metavar, str)


def path_setting(help_text: str, default: str = "") -> Any:  # noqa: ANN401
    """A file's path, as given."""
    return setting(default, values.string, help_text, "PATH")


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


# Flags spelt as another program spells them: the exporter-toolkit's, as node_exporter has it.
_FLAGS = {"web_config_file": "--web.config.file"}


def flag_name(key: str) -> str:
    """The command-line flag of a setting."""
    return _FLAGS.get(key) or "--" + key.replace("_", "-")


def env_name(key: str) -> str:
    """The environment variable of a setting."""
    return ENV_PREFIX + key.upper()
