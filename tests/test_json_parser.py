"""The HTTP input's JSON parser: orjson's speed, the standard library's results."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.inputs.falco_json import parser as json_parser

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
EVENTS = st.fixed_dictionaries(
    {"rule": st.text(), "output_fields": st.dictionaries(st.text(), VALUES, max_size=6)}
)


def _floated(value: object) -> object:
    """An integer beyond 64 bits as the float orjson reads it, anywhere inside `value`."""
    if type(value) is int and abs(value) >= 2**63:
        return float(value)
    if type(value) is list:
        return [_floated(item) for item in value]
    if type(value) is dict:
        return {key: _floated(item) for key, item in value.items()}
    return value


def as_read(document: object) -> object:
    """What of a document must be the standard library's exactly: an event's output fields
    (rendered into labels). Elsewhere nothing is rendered, and the parser lets orjson read an
    integer beyond 64 bits as a float (json_parser's docstring)."""
    if type(document) is list:
        return [as_read(item) for item in document]
    if type(document) is not dict:
        return _floated(document)
    return {
        key: value if key == "output_fields" else _floated(value) for key, value in document.items()
    }


def outcome(parse: Callable[[str], object], text: str) -> tuple[str, str]:
    """What a parser makes of a text, comparable across parsers (NaN included): the
    document, or that it was refused (too deep is a refusal too: both are not JSON)."""
    try:
        return "document", json.dumps(as_read(parse(text)), sort_keys=True)
    except (ValueError, RecursionError):
        return "refused", ""


def ours(text: str) -> tuple[str, str]:
    """json_parser.loads' outcome."""
    return outcome(json_parser.loads, text)


def verdict(text: str) -> tuple[str, str]:
    """The standard library's outcome."""
    return outcome(json.loads, text)


def test_orjson_runs_where_it_is_installed() -> None:
    """The image and `make test` install it; the parser then says so (the test can fail)."""
    pytest.importorskip("orjson")
    assert json_parser.PARSER_NAME.startswith("orjson ")


@settings(max_examples=300, deadline=None)
@given(EVENTS | st.lists(EVENTS, max_size=3))
def test_documents_read_as_the_standard_library_reads_them(document: object) -> None:
    """Events with big integers, nested values and any text: the same result, exactly."""
    for text in (json.dumps(document), json.dumps(document, ensure_ascii=False)):
        assert ours(text) == verdict(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_refused_or_read_as_the_standard_library_does(text: str) -> None:
    """Garbage, NaN, lone surrogates, trailing data: the same verdict and document."""
    assert ours(text) == verdict(text)


@pytest.mark.parametrize(
    ("text", "same"),
    [
        ("20000000000000000000", False),  # nothing of it is rendered: a float is fine
        ('{"rule": 20000000000000000000}', False),
        ('{"output_fields": {"n": 20000000000000000000}}', True),  # a label: exact
        ('[{"output_fields": {"n": -20000000000000000000}}]', True),
    ],
)
def test_big_integers_are_exact_where_they_are_rendered(text: str, same: bool) -> None:
    """The examples hypothesis found and the ones that matter: exactness in output fields."""
    parsed = json_parser.loads(text)
    assert as_read(parsed) == as_read(json.loads(text))
    if same:
        assert parsed == json.loads(text)


@pytest.mark.parametrize("text", ["x", "{}x", '{"rule": "r",', "[1,]", "\u0000"])
def test_garbage_is_read_once(text: str) -> None:
    """A refused text is not read again: its refusal is orjson's own message."""
    pytest.importorskip("orjson")
    with pytest.raises(ValueError, match=r".") as refused:
        json_parser.loads(text)
    with pytest.raises(ValueError, match=r".") as standard:
        json.loads(text)
    assert str(refused.value) != str(standard.value)


@pytest.mark.parametrize(
    "text",
    [
        '{"output_fields": {"evt.num": 18446744073709551616}}',
        '{"output_fields": {"ids": [1, -9223372036854775809]}}',
        '"\\ud800"',
        '{"a": NaN}',
        "[-Infinity, 1e400]",
        '"\\uDFFF"',
        '{"a": 1}\n{"b": 2}',
        "[" * 100_000,
    ],
)
def test_where_orjson_differs_the_standard_library_decides(text: str) -> None:
    """Integers beyond 64 bits keep their digits; lenient and refused texts are as before."""
    assert ours(text) == verdict(text)
