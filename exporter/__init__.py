"""falco-exporter: Falco's alerts as the Prometheus counter `falco_events`."""

# The one place the version is written: pyproject.toml reads it from here. A literal,
# not importlib.metadata, which would cost every process about 2 MiB of imports.
__version__ = "0.1.0"
