"""The inputs the configuration asks for, built once: the only place that looks at which.

After this, the exporter holds a list of `Input`s and treats them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from exporter.core.counter import EventCounter
from exporter.core.event import EventSink
from exporter.core.inputs import Input
from exporter.http.web_guard import WebGuard
from exporter.inputs.file.input import FileInput
from exporter.inputs.grpc.input import GrpcInput
from exporter.inputs.http.input import TARGET_NAME as HTTP_INPUT
from exporter.inputs.http.input import HttpInput
from exporter.settings.config import Config


def build_inputs(
    config: Config,
    counter: EventCounter,
    wrap_sink: Callable[[EventSink], EventSink],
    *,
    clock: Callable[[], float] = time.monotonic,
    on_certificates_changed: Callable[[], None] = lambda: None,
    forward: Callable[[bytes], None] | None = None,
    guards: Mapping[str, WebGuard] | None = None,
) -> list[Input]:
    """Every configured input, each counting into shards of `counter` through `wrap_sink`,
    and observing each event's delay into `counter.delays` under its own name (`grpc`,
    `http`, `file`): a gRPC Timestamp, or Falco's JSON text. The HTTP input also hands
    each accepted alert's JSON to `forward`, if given, and serves behind its web guard (by
    its listener's name in `guards`), if there is one.

    A certificate file that cannot be used raises CertificateFilesError.
    """
    delays = counter.delays
    inputs: list[Input] = []
    if config.grpc is not None:
        delays.declare("grpc")  # exported from the start, before any target is found

        def grpc_sink(sink: EventSink) -> EventSink:  # one per target: its reader thread's
            return wrap_sink(delays.observing_timestamp("grpc", sink))

        inputs.append(GrpcInput(config.grpc, counter, grpc_sink, on_certificates_changed))
    if config.file_input is not None:
        sink = delays.observing_text("file", counter.shard().add)
        inputs.append(FileInput(config.file_input, counter, wrap_sink(sink)))
    if config.http_input is not None:
        sink = delays.observing_text("http", counter.shard().add)
        http_input = HttpInput(config.http_input, wrap_sink(sink), clock, forward)
        guard = (guards or {}).get(HTTP_INPUT)
        if guard is not None:
            http_input.server.protect(guard)
        inputs.append(http_input)
    return inputs
