"""Where accepted alerts go besides falco_events: the optional forward to one downstream
URL (--forward-url), so that the exporter can sit first in Falco's http_output path.

May import: `exporter.core`, `exporter.settings`, `exporter.runtime` and itself; an input
reaches it only through the callable the app hands it.
"""
