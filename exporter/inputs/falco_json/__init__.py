"""Falco's JSON output (json_output, http_output, file_output) read into events: the parser
(orjson when installed), a line's document, and the event a document is.

Shared by the inputs that read Falco's JSON, which import it and never each other.
May import: `exporter.core` and itself.
"""
