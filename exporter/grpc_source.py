"""One subscription to one Falco over gRPC: connect, read, reconnect forever.

A target goes in; events go to the sink and state changes go to the TargetState.
The reading runs on a thread of its own with gRPC's synchronous API: measured in
bench/, that reads Falco's stream about 1.5 times cheaper per event than grpc.aio,
and it keeps event intake going while the event loop renders a scrape.

Two transports deliver the same events (FALCO.md section 1):
- `get` (default): call `get`, which drains Falco's queue and ends; call it again
  at once after a non-empty drain, or after the poll interval after an empty one.
- `sub`: one long stream; an empty request every poll interval makes Falco drain
  its queue. The stream is never half-closed.
Messages are read as bytes and decoded here, so one undecodable message is
counted and skipped while the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.experimental
import structlog
from google.protobuf.message import DecodeError

from exporter import falco_api
from exporter.backoff import Backoff
from exporter.counter import EventSink
from exporter.durations import format_duration
from exporter.errors import CertificateFilesError
from exporter.falcopb import version_pb2
from exporter.grpc_errors import describe
from exporter.grpc_event import decode_response, event_from_response
from exporter.targets import Target, TargetState

TRANSPORTS = ("get", "sub")

_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_VERSION_RPC_TIMEOUT = 10.0
# A stream that lasted this long, or delivered an event, counts as healthy:
# the next failure starts the backoff from its initial delay again.
_HEALTHY_STREAM_SECONDS = 10.0
_DECODE_ERROR_LOG_INTERVAL = 10.0
_THREAD_STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class SubscriptionSettings:
    """The knobs of one subscription, taken from Config (which holds the defaults)."""

    transport: str
    poll_interval: float
    backoff_initial: float
    backoff_max: float
    keepalive_time: float
    keepalive_timeout: float


class _Stopped(Exception):  # noqa: N818 - control flow, not an error
    """The subscription was asked to stop while a call was open."""


class _Stalled(Exception):  # noqa: N818 - control flow, not an error
    """A `get` call stayed open with no event for the stall limit: a half-open connection."""


class _ReconnectRequested(Exception):  # noqa: N818 - control flow, not an error
    """New certificate files: finish the current drain, then connect again with them."""


class GrpcSubscription:
    """Subscribes to one Falco's outputs until cancelled; run() never raises otherwise."""

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
        self._stop = threading.Event()
        self._reconnect = threading.Event()
        # Set with either of the two above, to cut a pause short.
        self._wake = threading.Event()
        self._call: Any = None
        # The `get` call in progress and the event count when it began, for the watchdog.
        self._get_call: Any = None
        self._stalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_decode_log = 0.0
        self._unlogged_decode_errors = 0

    async def run(self) -> None:
        """Read on a thread until this task is cancelled; then stop the thread and return."""
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        finished = self._loop.create_future()

        def work() -> None:
            try:
                self._run_blocking()
            finally:
                self._loop_call(finished.set_result, None)

        thread = threading.Thread(target=work, name=f"falco-{self._target.name}", daemon=True)
        thread.start()
        watchdog = (
            asyncio.create_task(self._watch_for_stalls())
            if self._settings.transport == "get"
            else None
        )
        try:
            await asyncio.shield(finished)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            self._stop.set()
            self._wake.set()
            call = self._call
            if call is not None:
                call.cancel()
            await asyncio.wait([finished], timeout=_THREAD_STOP_TIMEOUT)

    async def _watch_for_stalls(self) -> None:
        """Cancel a `get` call that has delivered nothing for keepalive time + timeout.

        An idle `get` returns within milliseconds and a draining one delivers events
        continuously, so a call open that long with no event sits on a half-open
        connection. gRPC's keepalive usually ends such a connection first; this is the
        guarantee, and it reads the event count only: nothing is added per event.
        """
        limit = self._settings.keepalive_time + self._settings.keepalive_timeout
        watched, events, since = None, 0, 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(limit / 4)
            call, now = self._get_call, loop.time()
            if call is not watched or self._state.events != events:
                watched, events, since = call, self._state.events, now
            elif call is not None and now - since >= limit:
                self._stalled = True
                call.cancel()
                watched = None

    def request_reconnect(self) -> None:
        """Connect again (re-reading the certificate files) once the current drain ends.

        Nothing in flight is lost: a `get` call is allowed to finish; a `sub` stream is
        half-closed, which makes Falco end it after its drain.
        """
        self._reconnect.set()
        self._wake.set()

    def _pause(self, seconds: float) -> None:
        """Wait, cut short by a stop or a reconnect request (raised as exceptions)."""
        self._wake.wait(seconds)
        if self._stop.is_set():
            raise _Stopped
        if self._reconnect.is_set():
            raise _ReconnectRequested

    def _loop_call(self, function: Callable[..., object], *args: object) -> None:
        """Run function on the event loop's thread, if the loop still runs."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(function, *args)

    def _run_blocking(self) -> None:
        """Connect, stream, and reconnect with jittered backoff until stopped."""
        while not self._stop.is_set():
            started = time.monotonic()
            events_before = self._state.events
            level = "warning"
            try:
                self._connect_and_stream()
                reason, detail, level = "stream_ended", "Falco closed the stream", "info"
            except _Stopped:
                return
            except _ReconnectRequested:
                reason, level = "certificate_rotation", "info"
                detail = "the client certificate files changed; connecting with the new ones"
            except _Stalled:
                reason = "stalled"
                detail = "no answer from Falco on an open call: the connection is half-open"
            except CertificateFilesError as error:
                reason, detail, level = "certificate_files", str(error), "error"
            except grpc.RpcError as error:
                if self._stop.is_set():
                    return
                reason, hint = describe(error)
                detail = f"{error.details()}" + (f" ({hint})" if hint else "")
            except Exception as error:  # noqa: BLE001 - the reader must outlive any bug
                if self._stop.is_set():
                    return
                reason, detail, level = "internal_error", repr(error), "error"
                self._log.exception("unexpected error in the Falco reader; reconnecting")
            finally:
                was_connected = self._state.connected
                self._state.connected = False
            self._after_failure(
                reason,
                detail,
                level,
                was_connected=was_connected,
                healthy=was_connected
                and (
                    self._state.events > events_before
                    or time.monotonic() - started >= _HEALTHY_STREAM_SECONDS
                ),
            )

    def _after_failure(
        self, reason: str, detail: str, level: str, *, was_connected: bool, healthy: bool
    ) -> None:
        """Count, log one line, and wait the backoff delay (cut short by a stop)."""
        rotation = reason == "certificate_rotation"
        if reason != "stream_ended" and not rotation:
            errors = self._state.connection_errors
            errors[reason] = errors.get(reason, 0) + 1
        if healthy or rotation:
            self._backoff.reset()
        delay = 0.0 if rotation else self._backoff.next_delay()
        self._state.reconnects += 1
        getattr(self._log, level)(
            "disconnected from Falco" if was_connected else "cannot connect to Falco",
            attempt=self._backoff.attempt,
            reason=reason,
            detail=detail,
            next_attempt_in=format_duration(round(delay, 3)),
        )
        self._wake.wait(delay)

    def _channel(self) -> grpc.Channel:
        options: list[tuple[str, Any]] = [
            ("grpc.keepalive_time_ms", int(self._settings.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(self._settings.keepalive_timeout * 1000)),
            # Any unanswered ping (gRPC's flow-control pings too) ends the connection after
            # the keepalive timeout: while one is in flight no keepalive ping is sent, so
            # without this a half-open connection lingered for gRPC's default minute.
            ("grpc.http2.ping_timeout_ms", int(self._settings.keepalive_timeout * 1000)),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.use_local_subchannel_pool", 1),
            # Reads each `get` on the calling thread instead of handing messages over
            # from gRPC's own thread: the cheapest way Python has to read a stream.
            (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
        ]
        if self._target.tls is None:
            return grpc.insecure_channel(self._target.address, options=options)
        if self._target.tls_server_name:
            options.append(("grpc.ssl_target_name_override", self._target.tls_server_name))
        credentials = self._target.tls.credentials()
        return grpc.secure_channel(self._target.address, credentials, options=options)

    def _connect_and_stream(self) -> None:
        # Any attempt reads the certificate files afresh: a pending rotation is served.
        self._get_call = None
        self._stalled = False
        self._reconnect.clear()
        self._wake.clear()
        if self._stop.is_set():
            raise _Stopped
        with self._channel() as channel:
            self._state.falco_version = self._falco_version(channel)
            self._state.connected = True
            self._loop_call(self._state.ever_connected.set)
            self._log.info(
                "connected to Falco",
                address=self._target.address,
                transport=self._settings.transport,
                falco_version=self._state.falco_version or "unknown",
                attempt=self._backoff.attempt + 1,
            )
            if self._settings.transport == "sub":
                self._subscribe(channel)
            else:
                self._get_repeatedly(channel)

    def _falco_version(self, channel: grpc.Channel) -> str:
        """Falco's version; this first call also proves the connection and TLS work."""
        version_rpc = channel.unary_unary(falco_api.VERSION_PATH)
        call = version_rpc.future(falco_api.EMPTY_REQUEST, timeout=_VERSION_RPC_TIMEOUT)
        self._call = call
        try:
            raw = call.result()
        except grpc.FutureCancelledError:
            raise _Stopped from None
        except grpc.RpcError as error:
            if self._stop.is_set():
                raise _Stopped from None
            if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            return ""
        try:
            return str(version_pb2.response.FromString(raw).version)
        except DecodeError:
            return ""

    def _get_repeatedly(self, channel: grpc.Channel) -> None:
        """Drain Falco's queue with `get`; pause for the poll interval after an empty drain."""
        get = channel.unary_stream(falco_api.GET_PATH)
        interval = self._settings.poll_interval
        while True:
            call = get(falco_api.EMPTY_REQUEST)
            self._call = self._get_call = call
            if self._stop.is_set():
                raise _Stopped
            received = self._read(call)
            self._get_call = None
            if received:
                self._pause(0)
            else:
                self._pause(interval)

    def _subscribe(self, channel: grpc.Channel) -> None:
        """One `sub` stream, polled every interval; returns when Falco ends it."""
        stop, reconnect, wake = self._stop, self._reconnect, self._wake
        interval = self._settings.poll_interval

        def requests() -> Iterator[bytes]:
            while not (stop.is_set() or reconnect.is_set()):
                yield falco_api.EMPTY_REQUEST
                wake.wait(interval)
            # Ending the iterator half-closes the stream, and Falco then ends it after
            # its drain: only done to stop or to reconnect.

        call = channel.stream_stream(falco_api.SUB_PATH)(requests())
        self._call = call
        if self._stop.is_set():
            raise _Stopped
        self._read(call)
        self._pause(0)

    def _read(self, call: Iterable[bytes]) -> int:
        """The hot path: decode, convert, count. Nothing else per event."""
        sink = self._sink
        state = self._state
        decode = decode_response
        to_event = event_from_response
        received = 0
        try:
            for raw in call:
                try:
                    message = decode(raw)
                except DecodeError:
                    self._decode_error(len(raw))
                    continue
                sink(message if message.source else to_event(message))
                received += 1
                state.events += 1
        except grpc.RpcError:
            if self._stop.is_set():
                raise _Stopped from None
            if self._stalled:
                self._stalled = False
                raise _Stalled from None
            raise
        finally:
            if received:
                state.last_event_time = time.time()
        return received

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
