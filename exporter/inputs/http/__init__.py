"""The HTTP input: Falco 0.44+'s http_output POSTs, JSON or not, counted or refused by reason.

May import: `exporter.core`, `exporter.settings`, `exporter.runtime`, `exporter.http` and
itself; never another input.
"""
