"""One line of Falco's JSON output, parsed: the document, or why it is none.

Shared by every input that reads Falco's JSON (the HTTP input's bodies, the file input's
lines), so that a line means the same whichever way it came.
"""

from __future__ import annotations

from exporter.inputs.falco_json import parser as json_parser


class NotJson:
    """A line that failed to parse, with the parser's message."""

    def __init__(self, error: str) -> None:
        self.error = error


_TOO_DEEP = NotJson("nested too deeply")


def parse(text: str) -> object:
    """The document of a line (or a body), or NotJson; nesting too deep for the parser is
    reported as not JSON."""
    try:
        return json_parser.loads(text)
    except ValueError as error:
        return NotJson(str(error).split(":")[0])
    except RecursionError:
        return _TOO_DEEP
