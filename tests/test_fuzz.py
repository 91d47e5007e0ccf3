"""Property-based tests: whatever Falco (or anyone) sends, nothing crashes and /metrics parses.

Arbitrary strings (control characters, non-ASCII, quotes, backslashes, newlines), raw
bytes (invalid UTF-8, truncated or corrupt protobuf), huge maps, unknown enum numbers and
JSON of the wrong types go through both conversion paths; the exposition they produce is
parsed back by prometheus_client and by Prometheus' own parser (promtool).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.core.counter import EventCounter
from exporter.core.event import FalcoEvent
from exporter.core.labels import DEFAULT_LABELS, build_label_set, go_exporter_labels
from exporter.exposition.falco_events import FalcoEventsText
from exporter.falcopb import outputs_pb2
from exporter.http.messages import Answer, Request
from exporter.inputs.falco_json.event import EventFormatError, event_from_json
from exporter.inputs.grpc.messages import decode_response, event_from_response
from exporter.inputs.http.site import HttpInputSite
from tests.support import parse_metrics

TEXT = st.text(max_size=300)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

responses = st.builds(
    outputs_pb2.response,
    rule=TEXT,
    priority=st.integers(-(2**31), 2**31 - 1),
    source_deprecated=st.integers(-(2**31), 2**31 - 1),
    source=TEXT,
    hostname=TEXT,
    output=TEXT,
    tags=st.lists(TEXT, max_size=20),
    output_fields=st.dictionaries(TEXT, TEXT, max_size=60),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=20,
)


@SETTINGS
@given(st.binary(max_size=3000))
def test_any_bytes_decode_or_are_refused_cleanly(raw: bytes) -> None:
    """Random bytes on the wire: a DecodeError, or one event counted and rendered parseably."""
    try:
        message = decode_response(raw)
    except DecodeError:
        return
    counter = EventCounter()
    counter.shard().add(event_from_response(message))
    [(key, value)] = parse_metrics(FalcoEventsText(counter).render())["falco_events"].items()
    assert value == 1
    expected = go_exporter_labels(event_from_response(message))
    assert tuple(dict(key)[name] for name in DEFAULT_LABELS) == expected


@SETTINGS
@given(responses)
def test_any_response_counts_once_and_renders_back_exactly(message: outputs_pb2.response) -> None:
    """Any response becomes one increment whose label values parse back unchanged."""
    decoded = decode_response(message.SerializeToString())
    counter = EventCounter()
    counter.shard().add(event_from_response(decoded))
    [(key, value)] = parse_metrics(FalcoEventsText(counter).render())["falco_events"].items()
    assert value == 1.0
    expected = go_exporter_labels(event_from_response(decoded))
    assert dict(key) == dict(zip(DEFAULT_LABELS, expected, strict=True))


@SETTINGS
@given(
    st.dictionaries(TEXT, json_values, max_size=10),
    st.sampled_from(["rule", "priority", "hostname", "source", "tags", "output_fields"]),
    json_values,
)
def test_any_json_document_is_an_event_or_a_clear_refusal(
    document: dict[str, Any], key: str, value: Any
) -> None:
    """Wrong JSON types anywhere: EventFormatError with a reason, never another exception."""
    document = {"rule": "r", "priority": "Warning", **document, key: value}
    try:
        event = event_from_json(document)
    except EventFormatError as error:
        reason = error.reason
        assert reason in {"not_an_event", "unknown_priority"}
        return
    for label in go_exporter_labels(event):
        assert isinstance(label, str)
        label.encode("utf-8")  # strict: no lone surrogates reach a label


@SETTINGS
@given(st.binary(max_size=3000))
def test_any_http_body_is_answered(body: bytes) -> None:
    """Any POST body: the answer's accepted count is what was counted; a 400 counts a reason."""
    counter = EventCounter()
    http_input = HttpInputSite(counter.shard().add, 1 << 20)
    answer = http_input.handle(Request(b"POST", b"/", b"application/json", b"", body, "fuzz"))
    assert isinstance(answer, Answer)  # a small body is answered at once
    try:
        accepted = json.loads(answer.body)["accepted"]
    except (ValueError, KeyError):
        accepted = 0  # a refusal of the whole body, in plain text
    assert http_input.counts.events == accepted
    assert (
        sum(parse_metrics(FalcoEventsText(counter).render())["falco_events"].values()) == accepted
    )
    assert (answer.status == 200) == (sum(http_input.rejected.values()) == 0)


label_sets = st.lists(
    st.fixed_dictionaries(
        {
            "rule": TEXT,
            "hostname": TEXT,
            "source": TEXT,
            "pod": TEXT,
            "image": TEXT,
            "priority": st.integers(-5, 12),
            "tags": st.lists(TEXT, max_size=4),
        }
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_sets)
def test_prometheus_own_parser_accepts_any_exposition(events: list[dict[str, Any]]) -> None:
    """promtool (Prometheus' parser and linter) finds nothing but the `_total` remark."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    counter = EventCounter(
        build_label_set(extra={"image": "container.image.repository"}, with_priority_name=True)
    )
    add = counter.shard().add
    for item in events:
        add(
            FalcoEvent(
                item["rule"],
                item["priority"],
                item["source"],
                item["hostname"],
                tuple(item["tags"]),
                {"k8s.pod.name": item["pod"], "container.image.repository": item["image"]},
            )
        )
    text = FalcoEventsText(counter).render()
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = (result.stdout + result.stderr).strip().splitlines()
    assert problems == ['falco_events counter metrics should have "_total" suffix'], json.dumps(
        text[:500]
    )
    assert sum(parse_metrics(text)["falco_events"].values()) == len(events)


@SETTINGS
@given(
    st.builds(
        FalcoEvent,
        rule=TEXT,
        priority=st.integers(-3, 12),
        source=TEXT,
        hostname=TEXT,
        tags=st.lists(TEXT, max_size=5),
        output_fields=st.dictionaries(
            st.sampled_from(["k8s.ns.name", "k8s.pod.name", "k8smeta.ns.name", "k8smeta.pod.name"])
            | TEXT,
            TEXT,
            max_size=6,
        ),
    )
)
def test_configured_label_sets_agree_with_the_go_exporter_values(event: FalcoEvent) -> None:
    """The default hot path and a configured label set give the same value to every label."""
    configured = build_label_set(with_priority_name=True)
    values = dict(zip(configured.names, configured.values(event), strict=True))
    assert tuple(values[name] for name in DEFAULT_LABELS) == go_exporter_labels(event)
