"""What the exporter's own ports serve: `/metrics`, the probes, the live page and its data.

May import: `exporter.core`, `exporter.settings`, `exporter.runtime`, `exporter.exposition`,
`exporter.http` and itself; it sees inputs only through the contract in `exporter.core`.
"""
