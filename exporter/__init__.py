"""falco-exporter: Falco's alerts as the Prometheus counter `falco_events`."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("falco-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
