"""Settings that are valid but work against the shipped alert rules: said, not refused.

A newcomer copies a short `--series-ttl` from a test or drops `rule` to save series, and
then the shipped alerts never fire. Start-up logs each of these as a warning, and
`--check-config` prints them on stderr; neither stops the exporter.
"""

from __future__ import annotations

from exporter.settings.config import Config

# The longest window of the shipped alerts on falco_events (tools/gen_rules.py).
ALERT_WINDOW_SECONDS = 5 * 60
# The labels the shipped alerts group or name falco_events by.
ALERT_LABELS = ("rule", "priority", "k8s_ns_name", "k8s_pod_name")


def advice(config: Config) -> list[str]:
    """What the configuration breaks in the shipped alerts, one sentence each."""
    found = []
    ttl = config.series.limits.ttl
    if 0 < ttl < ALERT_WINDOW_SECONDS:
        found.append(
            f"--series-ttl {ttl:g}s is shorter than the shipped alerts' "
            f"{ALERT_WINDOW_SECONDS // 60}-minute windows: a series can expire before an alert "
            "sees it grow; 1h is the chart's default"
        )
    dropped = [label for label in ALERT_LABELS if label in config.series.drop_labels]
    if dropped:
        found.append(
            f"--drop-labels {','.join(dropped)}: the shipped alerts group falco_events by "
            f"{', '.join(ALERT_LABELS)}; without {', '.join(dropped)} they group everything "
            "together and their text names nothing"
        )
    return found
