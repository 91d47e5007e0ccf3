"""One subscription to one Falco over gRPC: connect, poll, read, reconnect forever.

A target goes in; events go to the sink and state changes go to the TargetState.
Falco's `sub` writes nothing until it reads a request and then drains its queue,
so a poller sends an empty request every poll interval for as long as the stream
lives, and never half-closes. Messages are read as bytes and decoded here, so one
undecodable message is counted and skipped while the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import grpc.aio
import structlog
from google.protobuf.message import DecodeError

from exporter import falco_api
from exporter.backoff import Backoff
from exporter.durations import format_duration
from exporter.event import FalcoEvent
from exporter.falcopb import version_pb2
from exporter.grpc_errors import describe
from exporter.grpc_event import decode_response, event_from_response
from exporter.targets import CertificateFilesError, Target, TargetState

EventSink = Callable[[FalcoEvent], None]

_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_VERSION_RPC_TIMEOUT = 10.0
# A stream that lasted this long, or delivered an event, counts as healthy:
# the next failure starts the backoff from its initial delay again.
_HEALTHY_STREAM_SECONDS = 10.0
_DECODE_ERROR_LOG_INTERVAL = 10.0


@dataclass(frozen=True)
class SubscriptionSettings:
    """The knobs of one subscription, taken from Config."""

    poll_interval: float = 0.05
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    keepalive_time: float = 10.0
    keepalive_timeout: float = 5.0


class GrpcSubscription:
    """Subscribes to one Falco's outputs until cancelled; never raises out of run()."""

    def __init__(
        self,
        target: Target,
        state: TargetState,
        sink: EventSink,
        settings: SubscriptionSettings,
    ) -> None:
        self._target = target
        self._state = state
        self._sink = sink
        self._settings = settings
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self._log = structlog.get_logger("grpc_source").bind(target=target.name)
        self._last_decode_log = 0.0
        self._unlogged_decode_errors = 0

    async def run(self) -> None:
        """Connect, stream, and reconnect with jittered backoff, forever."""
        while True:
            started = time.monotonic()
            events_before = self._state.events
            try:
                await self._connect_and_stream()
                reason, hint, level = (
                    "stream_ended",
                    "Falco closed the stream (restart or rules reload)",
                    "info",
                )
            except CertificateFilesError as error:
                reason, hint, level = "certificate_files", str(error), "error"
            except grpc.aio.AioRpcError as error:
                reason, hint = describe(error)
                hint = f"{error.details()}" + (f" ({hint})" if hint else "")
                level = "warning"
            finally:
                was_connected = self._state.connected
                self._state.connected = False
            if reason != "stream_ended":
                self._state.connection_errors[reason] = (
                    self._state.connection_errors.get(reason, 0) + 1
                )
            healthy = was_connected and (
                self._state.events > events_before
                or time.monotonic() - started >= _HEALTHY_STREAM_SECONDS
            )
            if healthy:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            self._state.reconnects += 1
            getattr(self._log, level)(
                "disconnected from Falco" if was_connected else "cannot connect to Falco",
                attempt=self._backoff.attempt,
                reason=reason,
                detail=hint,
                next_attempt_in=format_duration(round(delay, 3)),
            )
            await asyncio.sleep(delay)

    def _channel(self) -> grpc.aio.Channel:
        options: list[tuple[str, int | str]] = [
            ("grpc.keepalive_time_ms", int(self._settings.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(self._settings.keepalive_timeout * 1000)),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.use_local_subchannel_pool", 1),
        ]
        if self._target.tls is None:
            return grpc.aio.insecure_channel(self._target.address, options=options)
        if self._target.tls_server_name:
            options.append(("grpc.ssl_target_name_override", self._target.tls_server_name))
        credentials = self._target.tls.credentials()
        return grpc.aio.secure_channel(self._target.address, credentials, options=options)

    async def _connect_and_stream(self) -> None:
        async with self._channel() as channel:
            self._state.falco_version = await self._falco_version(channel)
            call = channel.stream_stream(falco_api.SUB_PATH)()
            poller = asyncio.create_task(self._poll(call))
            try:
                self._state.connected = True
                self._state.ever_connected.set()
                self._log.info(
                    "connected to Falco",
                    address=self._target.address,
                    falco_version=self._state.falco_version or "unknown",
                    attempt=self._backoff.attempt + 1,
                )
                await self._read(call)  # returns on OK; raises AioRpcError otherwise
            finally:
                poller.cancel()
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller

    async def _falco_version(self, channel: grpc.aio.Channel) -> str:
        """Falco's version; this first call also proves the connection and TLS work."""
        version_rpc = channel.unary_unary(falco_api.VERSION_PATH)
        try:
            raw = await version_rpc(falco_api.EMPTY_REQUEST, timeout=_VERSION_RPC_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            return ""
        try:
            return str(version_pb2.response.FromString(raw).version)
        except DecodeError:
            return ""

    async def _poll(self, call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
        """Ask for queued events at once, then every poll interval; never half-close."""
        interval = self._settings.poll_interval
        with contextlib.suppress(
            grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError
        ):
            while not call.done():
                await call.write(falco_api.EMPTY_REQUEST)
                await asyncio.sleep(interval)

    async def _read(self, call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
        """The hot path: decode, convert, count. Nothing else per event."""
        read = call.read
        sink = self._sink
        state = self._state
        eof = grpc.aio.EOF
        while True:
            raw = await read()
            if raw is eof:
                return
            try:
                message = decode_response(raw)
            except DecodeError:
                self._decode_error(len(raw))
                continue
            sink(event_from_response(message))
            state.events += 1
            state.last_event_time = time.time()

    def _decode_error(self, size: int) -> None:
        """Count an undecodable message; log at most one line per interval, with the count."""
        self._state.decode_errors += 1
        self._unlogged_decode_errors += 1
        now = time.monotonic()
        if now - self._last_decode_log >= _DECODE_ERROR_LOG_INTERVAL:
            self._log.warning(
                "skipped a Falco message that does not decode (invalid UTF-8 or corrupt)",
                size_bytes=size,
                skipped_since_last_log=self._unlogged_decode_errors,
            )
            self._last_decode_log = now
            self._unlogged_decode_errors = 0
