"""The parts the exporter is built of, each made from the Config: the counter with its label
set and fold log, the delivery ledger with its report lines, the web guards of the
listeners that have a web configuration file, and the HTTP input's connection limit fitted
to the open files allowed. app.py wires them; this module only makes them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import structlog

from exporter.core.cardinality import Fold, SeriesLimits
from exporter.core.counter import EventCounter
from exporter.core.delivery import DeliveryLedger
from exporter.core.labels import build_label_set
from exporter.http.limits import METRICS, PROBES
from exporter.http.web_guard import WebGuard
from exporter.inputs.http.input import TARGET_NAME
from exporter.runtime.open_files import RESERVED, open_files_limit
from exporter.runtime.rate_limited_log import RateLimitedLog
from exporter.settings.config import Config


def fit_open_files(config: Config, log: Any) -> Config:  # noqa: ANN401 - a structlog logger
    """The configuration, with the HTTP input's connection limit lowered if the process may
    not open that many files (after raising its soft limit as far as allowed)."""
    http_input = config.http_input
    listeners = METRICS.max_connections + PROBES.max_connections + RESERVED
    wanted = listeners + (http_input.max_connections if http_input else 0)
    limit = open_files_limit(wanted)
    if http_input is None or limit >= wanted:
        return config
    fitted = max(limit - listeners, 1)
    log.error(
        "too few file descriptors for --http-input-max-connections; lowered to fit",
        open_files_limit=limit,
        http_input_max_connections=fitted,
        wanted=http_input.max_connections,
        fix="raise the open files limit (ulimit -n), or lower --http-input-max-connections",
    )
    return dataclasses.replace(
        config, http_input=dataclasses.replace(http_input, max_connections=fitted)
    )


def web_guards(config: Config) -> dict[str, WebGuard]:
    """A WebGuard per listener with a web configuration file (WebConfigError if unusable)."""
    files = {"metrics": config.metrics.web_config}
    if config.http_input is not None:
        files[TARGET_NAME] = config.http_input.web_config
    interval = config.web_config_check_interval
    return {name: WebGuard(path, name, interval) for name, path in files.items() if path}


def counter_for(config: Config, clock: Callable[[], float]) -> EventCounter:
    """The counter of falco_events, with its label set, limits and a rate-limited fold log."""
    series = config.series
    folds = RateLimitedLog(structlog.get_logger("counter"), clock=clock)

    def folded(why: Fold, limits: SeriesLimits) -> None:
        folds.log(
            ("series limit", why),
            logging.WARNING,
            "series limit reached; new series are counted in folded series",
            reason=why,
            max_series=limits.max_series,
            per_rule=limits.per_rule,
            per_host=limits.per_host,
            per_pod=limits.per_pod,
        )

    return EventCounter(
        build_label_set(
            series.drop_labels,
            dict(series.extra_labels),
            series.priority_name_label,
            series.workload_label,
        ),
        limits=series.limits,
        clock=clock,
        on_fold=folded,
    )


def delivery_for(config: Config, clock: Callable[[], float]) -> DeliveryLedger:
    """The delivery ledger, telling the log (once a minute per kind) what it saw."""
    reports = RateLimitedLog(structlog.get_logger("delivery"), clock=clock)
    lines = {
        "alerts lost": "alerts Falco raised never reached this exporter",
        "unreadable snapshot": "a metrics snapshot without the counts delivery needs",
        "untracked": "too many Falcos to account for; raise --delivery-max-falcos",
    }

    def report(what: str, hostname: str, detail: str) -> None:
        level = logging.ERROR if what == "alerts lost" else logging.WARNING
        # One line a minute per kind, naming the latest Falco: forged hostnames by the
        # thousand cannot flood the log (the metrics have every Falco).
        reports.log(what, level, lines[what], hostname=hostname, detail=detail)

    return DeliveryLedger(
        accounting=config.delivery.accounting,
        max_falcos=config.delivery.max_falcos,
        max_label_length=config.series.limits.max_label_length or 256,
        clock=clock,
        report=report,
    )
