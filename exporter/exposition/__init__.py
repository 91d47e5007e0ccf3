"""What Prometheus reads: the text format, `falco_events`, and the self-metrics assembled
from every part's families.

May import: `exporter.core`, `exporter.settings`, `exporter.runtime` and itself.
"""
