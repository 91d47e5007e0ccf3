"""The `falco-exporter` command: the exporter, plus `simulate` and `demo` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import yaml

from exporter import __version__
from exporter.runtime.certificates import WARN_BEFORE_EXPIRY, HeldCertificates
from exporter.runtime.event_loop import EventLoopError, loop_factory, run_with_loop
from exporter.runtime.process import configure_process, quiet_grpc_core
from exporter.settings.advice import advice
from exporter.settings.config import Config
from exporter.settings.load import ConfigError, load_config
from exporter.settings.schema import SETTINGS, flag_name, shown_default
from exporter.settings.tls import utc_time

_SUBCOMMANDS = ("simulate", "demo", "certs")


class _Parser(argparse.ArgumentParser):
    """argparse, with one-line errors that suggest the flag a typo meant.

    It keeps its own list of the options it was given (argparse lists its actions nowhere
    public): every option, and those that take a value.
    """

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 - argparse's own keywords
        self.options: list[str] = []
        self.valued_options: set[str] = set()
        super().__init__(**kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:  # noqa: ANN401
        """argparse's, recording the option strings of the action it made."""
        action = super().add_argument(*args, **kwargs)
        self.options.extend(action.option_strings)
        if action.nargs is None:
            self.valued_options.update(action.option_strings)
        return action

    def error(self, message: str) -> NoReturn:
        """One line naming the problem (and the likely flag), then where the flags are listed."""
        hint = ""
        if message.startswith("unrecognized arguments: "):
            unknown = message.removeprefix("unrecognized arguments: ").split()[0]
            close = difflib.get_close_matches(unknown.split("=")[0], self.options, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            message = f"unrecognized argument {unknown}"
        self.exit(
            2, f"{self.prog}: error: {message}{hint}\nRun '{self.prog} --help' for every flag.\n"
        )


def build_parser() -> _Parser:
    """Flags of the exporter: one per setting, with the Go exporter's names.

    A boolean setting is a flag that works bare (`--priority-name-label`), with a value
    (`--priority-name-label=false`) and negated (`--no-priority-name-label`).
    """
    parser = _Parser(
        prog="falco-exporter",
        allow_abbrev=False,
        description="Export Falco's alerts to Prometheus as the falco_events counter. "
        "Every flag can also be set as FALCO_EXPORTER_<NAME> or in the --config YAML file "
        "(flags win over the environment, which wins over the file). "
        "Subcommands: 'falco-exporter simulate --help', 'falco-exporter demo --help', "
        "'falco-exporter certs --help'.",
    )
    parser.add_argument("--config", metavar="PATH", help="YAML file of settings")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate, print the effective configuration and exit",
    )
    parser.add_argument("--version", action="version", version=f"falco-exporter {__version__}")
    for setting in SETTINGS:
        # argparse formats help with %: a literal one (a share, "10%") is written %%.
        help_text = f"{setting.metadata['help']} (default: {shown_default(setting)})"
        help_text = help_text.replace("%", "%%")
        if isinstance(setting.default, bool):
            parser.add_argument(
                flag_name(setting.name),
                dest=setting.name,
                nargs="?",
                const="true",
                default=argparse.SUPPRESS,
                metavar="true|false",
                help=help_text,
            )
            parser.add_argument(
                "--no-" + flag_name(setting.name).removeprefix("--"),
                dest=setting.name,
                action="store_const",
                const="false",
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
            continue
        repeatable = isinstance(setting.default, tuple)
        parser.add_argument(
            flag_name(setting.name),
            dest=setting.name,
            action="append" if repeatable else "store",
            default=argparse.SUPPRESS,
            metavar=setting.metadata["metavar"],
            help=help_text,
        )
    return parser


_PROGRAM_NAMES = frozenset(
    {"falco-exporter", "/usr/bin/falco-exporter", "/usr/local/bin/falco-exporter"}
)


def _plain_arguments(args: list[str], parser: _Parser) -> list[str]:
    """Arguments as argparse can read them.

    - A first word naming the program is dropped: the Go exporter's Helm chart ran
      `[/usr/bin/falco-exporter, --client-socket=..., ...]`, and Go's flag parser ignored it.
    - `--timeout -5s` becomes `--timeout=-5s`, so that the value reaches its parser (which
      refuses it clearly) instead of being mistaken for an unknown flag.
    """
    if (args and os.path.basename(args[0]) == "falco-exporter") or (
        args and args[0] in _PROGRAM_NAMES
    ):
        args = args[1:]
    takes_value = parser.valued_options
    merged: list[str] = []
    index = 0
    while index < len(args):
        word = args[index]
        following = args[index + 1] if index + 1 < len(args) else None
        if (
            word in takes_value
            and following is not None
            and following.startswith("-")
            and following not in takes_value
        ):
            merged.append(f"{word}={following}")
            index += 2
            continue
        merged.append(word)
        index += 1
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad configuration)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _SUBCOMMANDS:
        quiet_grpc_core()  # before the simulator imports grpc; its commands set up logging
        try:
            from exporter.simulator.cli import run_subcommand  # noqa: PLC0415
        except ImportError as error:
            print(
                f"falco-exporter {args[0]}: needs the 'sim' extra: from a checkout of "
                f"falco-exporter, `pip install '.[sim]'` (or `make demo`); missing: {error}",
                file=sys.stderr,
            )
            return 2
        return run_subcommand(args[0], args[1:])
    parser = build_parser()
    options = vars(parser.parse_args(_plain_arguments(args, parser)))
    config_file = options.pop("config")
    check_only = options.pop("check_config")
    try:
        config = load_config(options, config_file)
        loop = loop_factory(config.event_loop)
    except (ConfigError, EventLoopError) as error:
        print(f"falco-exporter: configuration error: {error}", file=sys.stderr)
        return 2
    if check_only:
        for sentence in advice(config):
            print(f"falco-exporter: warning: {sentence}", file=sys.stderr)
        held = HeldCertificates(config.certificate_files())
        for role, path, expires in held.expiring(WARN_BEFORE_EXPIRY):
            print(
                f"falco-exporter: warning: the {role} certificate {path} expires "
                f"{utc_time(expires)}, within {WARN_BEFORE_EXPIRY / 86400:g} days "
                "(alert FalcoExporterCertificateExpiringSoon)",
                file=sys.stderr,
            )
        try:
            yaml.safe_dump(config.settings.effective(), sys.stdout, sort_keys=False)
            sys.stdout.flush()
        except BrokenPipeError:
            # `--check-config | head`: the reader left; no traceback, and none at exit either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return run(config, *loop)


def run(
    config: Config,
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    loop_name: str = "asyncio",
) -> int:
    """Run the exporter until SIGTERM or SIGINT; 0 after a clean shutdown."""
    configure_process(config.log_level, config.log_format)
    from exporter.runner import serve_until_signalled  # noqa: PLC0415 - after the logging set-up

    return run_with_loop(serve_until_signalled(config, loop_name), factory)
