"""The inputs the configuration asks for, built once: the only place that looks at which.

After this, the exporter holds a list of `Input`s and treats them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.core.counter import EventCounter
from exporter.core.event import EventSink
from exporter.core.inputs import Input
from exporter.inputs.file.input import FileInput
from exporter.inputs.grpc.input import GrpcInput
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
) -> list[Input]:
    """Every configured input, each counting into shards of `counter` through `wrap_sink`,
    and observing each event's delay into `counter.delays` under its own name (`grpc`,
    `http`, `file`): a gRPC Timestamp, or Falco's JSON text. The HTTP input also hands
    each accepted alert's JSON to `forward`, if given.

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
        inputs.append(HttpInput(config.http_input, wrap_sink(sink), clock, forward))
    return inputs
