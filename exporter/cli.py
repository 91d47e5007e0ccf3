"""The `falco-exporter` command: the exporter, plus `simulate` and `demo` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import yaml

from exporter import __version__
from exporter.config import (
    SETTINGS,
    Config,
    ConfigError,
    flag_name,
    load_config,
    shown_default,
)
from exporter.process import configure_process

_SUBCOMMANDS = ("simulate", "demo", "certs")


def build_parser() -> argparse.ArgumentParser:
    """Flags of the exporter: one per setting, with the Go exporter's names."""
    parser = argparse.ArgumentParser(
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
        repeatable = isinstance(setting.default, tuple)
        parser.add_argument(
            flag_name(setting.name),
            dest=setting.name,
            action="append" if repeatable else "store",
            default=argparse.SUPPRESS,
            metavar=setting.metadata["metavar"],
            help=f"{setting.metadata['help']} (default: {shown_default(setting)})",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad configuration)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _SUBCOMMANDS:
        configure_process()  # before the simulator imports grpc
        try:
            from exporter.simulator.cli import run_subcommand  # noqa: PLC0415
        except ImportError as error:
            print(
                f"falco-exporter {args[0]}: needs the 'sim' extra "
                f"(pip install 'falco-exporter[sim]'): {error}",
                file=sys.stderr,
            )
            return 2
        return run_subcommand(args[0], args[1:])
    options = vars(build_parser().parse_args(args))
    config_file = options.pop("config")
    check_only = options.pop("check_config")
    try:
        config = load_config(options, config_file)
    except ConfigError as error:
        print(f"falco-exporter: configuration error: {error}", file=sys.stderr)
        return 2
    if check_only:
        yaml.safe_dump(config.effective(), sys.stdout, sort_keys=False)
        return 0
    return run(config)


def run(config: Config) -> int:
    """Run the exporter until SIGTERM or SIGINT; 0 after a clean shutdown."""
    configure_process(config.log_level, config.log_format)
    from exporter.runner import serve_until_signalled  # noqa: PLC0415 - imports grpc

    return asyncio.run(serve_until_signalled(config))
