"""The simulator's and the demo's shared command-line arguments: what to replay, how fast,
and, on the HTTP path, Falco's metrics snapshots and the posts lost on the way."""

from __future__ import annotations

import argparse
from pathlib import Path


def events_argument(parser: argparse.ArgumentParser, default_rate: float) -> None:
    """What to replay and how fast (both paths)."""
    parser.add_argument(
        "--events",
        type=Path,
        default=None,
        help="JSONL file of Falco events (default: the bundled samples)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=default_rate,
        help=f"events per second, 0 for all at once (default: {default_rate})",
    )
    parser.add_argument("--once", action="store_true", help="replay the file once, not in a loop")


def _share(text: str) -> float:
    """A share of the posts, 0 to 1 (0.1: one in ten)."""
    try:
        share = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= share < 1.0:
        raise argparse.ArgumentTypeError(f"a share from 0 to below 1 (0.1: one in ten), not {text}")
    return share


def _seconds(text: str) -> float:
    """Seconds, 0 or more."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"0 or more seconds, not {text}")
    return seconds


def delivery_arguments(parser: argparse.ArgumentParser, default_interval: float) -> None:
    """The HTTP path's Falco counts: its metrics snapshots, and alerts lost on the way."""
    parser.add_argument(
        "--snapshot-interval",
        type=_seconds,
        default=default_interval,
        metavar="SECONDS",
        help="HTTP path: post Falco's metrics snapshot (its own count of alerts) every "
        f"SECONDS, as metrics.output_rule does; 0: never (default: {default_interval:g})",
    )
    parser.add_argument(
        "--drop-share",
        type=_share,
        default=0.0,
        metavar="SHARE",
        help="HTTP path: raise but never post this share of the alerts (0.1: one in ten), as "
        "a broken path loses them; the exporter's falco_exporter_alerts_lost_total shows it "
        "once snapshots are on (default: 0)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="HTTP path: which alerts --drop-share drops, the same each run (default: "
        "different each run)",
    )
