"""What a process needs around the data path: logging, signals, the event loop, background
tasks, rate-limited log lines and file watches.

May import: `exporter.core`, `exporter.settings` (its vocabularies, certificate dates) and
itself.
"""
