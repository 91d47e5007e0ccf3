"""Parsing JSON: orjson when installed, with the standard library's verdicts.

The standard library's parser is the largest part of what the HTTP input spends on an
event of its own (docs/performance.md); orjson parses the same event about three times
faster. It is optional, as uvloop is (`pip install 'falco-exporter[fast]'`; the image has
it), and it must not change what a document means, so the standard library decides where
the two could differ, and only there: a text is never parsed twice otherwise (a sender
of garbage must not cost us double).
- orjson refuses what the standard library accepts: NaN and Infinity, lone surrogates
  (`"\\ud800"`), and numbers beyond a double's range. Only a refused text holding one
  of those is read again; any other refusal stands, with orjson's message.
- an output field holds a float that may have been an integer beyond 64 bits, which orjson
  reads as a float where the standard library keeps the integer (and its digits, which a
  label may show). Falco writes none; only the output fields are ever rendered.
"""

from __future__ import annotations

import json
from collections.abc import Callable

_BEYOND_INT64 = float(2**63)


def _standard(text: str) -> object:
    return json.loads(text)


def _maybe_big_integer(value: object) -> bool:
    """A float orjson may have made of a large integer, anywhere inside `value`."""
    if type(value) is float:
        return value.is_integer() and abs(value) >= _BEYOND_INT64
    if type(value) is list:
        return any(_maybe_big_integer(item) for item in value)
    if type(value) is dict:
        return any(_maybe_big_integer(item) for item in value.values())
    return False


_MAY_HOLD_A_FLOAT = frozenset({float, list, dict})


def _fields_need_standard(document: object) -> bool:
    """Whether an event's output fields (or those of any event of an array) need it."""
    if type(document) is dict:
        fields = document.get("output_fields")
        if type(fields) is not dict or _MAY_HOLD_A_FLOAT.isdisjoint(map(type, fields.values())):
            return False  # the usual (strings, integers, null), told in one pass in C
        return any(
            type(value) is not str and _maybe_big_integer(value) for value in fields.values()
        )
    if type(document) is list:
        return any(_fields_need_standard(item) for item in document)
    return False


def _standard_may_accept(text: str, error: str) -> bool:
    """Whether a text orjson refused could be one the standard library reads."""
    return (
        "NaN" in text
        or "Infinity" in text
        or "\\ud" in text
        or "\\uD" in text
        or "infinity" in error
    )


def _choose() -> tuple[Callable[[str], object], str]:
    try:
        import orjson  # noqa: PLC0415 - optional
    except ImportError:
        return _standard, "json (standard library; orjson not installed)"
    fast_loads = orjson.loads
    fast_error = orjson.JSONDecodeError

    def loads(text: str) -> object:
        try:
            document = fast_loads(text)
        except fast_error as error:
            if _standard_may_accept(text, str(error)):
                return json.loads(text)  # the standard library's verdict and leniency
            raise
        if _fields_need_standard(document):
            return json.loads(text)
        return document

    return loads, f"orjson {orjson.__version__}"


# `loads` raises ValueError (a JSONDecodeError) where json.loads would, or RecursionError.
loads, PARSER_NAME = _choose()
