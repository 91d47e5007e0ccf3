"""The HTTP/1.1 server every listener runs on (httptools on asyncio's transports), and the
messages between it and the sites it serves.

May import: `exporter.core`, `exporter.settings`, `exporter.runtime` and itself.
"""
