"""One connection to one Falco over gRPC, read blocking on the target's reader thread.

`attempt()` connects, reads until the connection ends, and returns why, as one
Disconnect; it returns None only when asked to stop. It never raises: every failure
is classified where it happens. The reading uses gRPC's synchronous API: measured in
bench/, that reads Falco's stream about 1.5 times cheaper per event than grpc.aio, and
it keeps event intake going while the event loop renders a scrape.

Two transports deliver the same events (docs/falco-wire-contract.md#grpc-outputs-api):
- `get` (default): call `get`, which drains Falco's queue and ends; call it again
  at once after a non-empty drain, or after the poll interval after an empty one.
- `sub`: one long stream; an empty request every poll interval makes Falco drain
  its queue. The stream is never half-closed.
Messages are read as bytes and decoded here, so one undecodable message is
counted and skipped while the stream goes on.

Other threads reach a reader through three methods only: `stop()`, `request_reconnect()`
and `cancel_if_stalled(call)`, which names the call it means; they read `current_get`.
Everything else runs on the reader thread (reader_thread.py), which owns the retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
import grpc.experimental
import structlog
from google.protobuf.message import DecodeError

from exporter.falcopb import version_pb2
from exporter.inputs.grpc import api as falco_api
from exporter.inputs.grpc.disconnect import Disconnect, Ending, disconnect, rpc_disconnect
from exporter.inputs.grpc.messages import decode_response, event_from_response
from exporter.inputs.grpc.targets import TargetFeed
from exporter.runtime.rate_limited_log import RateLimitedLog
from exporter.settings.choices import Transport
from exporter.settings.tls import CertificateFilesError

_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_VERSION_RPC_TIMEOUT = 10.0
_DECODE_ERROR_LOG_INTERVAL = 10.0


class _Ended(Exception):  # noqa: N818 - control flow inside one attempt, never escapes it
    """The attempt is over for a known reason; `disconnect` is None when stopping."""

    def __init__(self, disconnect: Disconnect | None) -> None:
        super().__init__()
        self.disconnect = disconnect


class FalcoReader:
    """Reads one target on the calling thread; each attempt returns a Disconnect."""

    def __init__(self, feed: TargetFeed, on_connected: Callable[[], None]) -> None:
        """`on_connected` runs on the reader thread once each connection is up."""
        self._target = feed.target
        self._state = feed.state
        self._sink = feed.sink
        self._settings = feed.stream
        self._on_connected = on_connected
        log = structlog.get_logger("grpc_input").bind(target=feed.target.name)
        self._log = log
        self._decode_errors = RateLimitedLog(log, _DECODE_ERROR_LOG_INTERVAL)
        self._stopping = threading.Event()
        self._reconnect = threading.Event()
        self._wake = threading.Event()  # set with either of the two above: ends a pause
        self._call: Any = None  # the call in progress, to cancel on stop
        self._stalled_call: Any = None  # the call the watchdog cancelled
        self.current_get: Any = None  # the `get` call in progress, read by the watchdog

    # Reached from other threads.

    def stop(self) -> None:
        """End the attempt in progress and every pause; attempt() then returns None."""
        self._stopping.set()
        self._wake.set()
        call = self._call
        if call is not None:
            call.cancel()

    def request_reconnect(self) -> None:
        """Connect again (re-reading the certificate files) once the current drain ends.

        Nothing in flight is lost: a `get` call is allowed to finish; a `sub` stream is
        half-closed, which makes Falco end it after its drain.
        """
        self._reconnect.set()
        self._wake.set()

    def cancel_if_stalled(self, call: object) -> bool:
        """Cancel `call` as stalled if it is still the `get` in progress; False otherwise."""
        if call is None or call is not self.current_get:
            return False
        self._stalled_call = call
        call.cancel()  # type: ignore[attr-defined]
        return True

    @property
    def stopping(self) -> bool:
        """True once stop() was called."""
        return self._stopping.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep, cut short by stop() or request_reconnect()."""
        self._wake.wait(seconds)

    # The reader thread.

    def attempt(self) -> Disconnect | None:
        """Connect and read until the connection ends; why it ended, or None to stop."""
        try:
            self._connect_and_stream()
            return disconnect(Ending.STREAM_ENDED, "Falco closed the stream")
        except _Ended as ended:
            return ended.disconnect
        except CertificateFilesError as error:
            return disconnect(Ending.CERTIFICATE_FILES, str(error))
        except grpc.RpcError as error:
            return None if self.stopping else self._rpc_disconnect(error)
        except Exception as error:  # noqa: BLE001 - the reader must outlive any bug
            if self.stopping:
                return None
            self._log.exception("unexpected error in the Falco reader; reconnecting")
            return disconnect(Ending.INTERNAL_ERROR, repr(error))
        finally:
            self._state.connected = False
            self.current_get = None

    def _rpc_disconnect(self, error: grpc.RpcError) -> Disconnect:
        """A failed call, with the certificate files in use named where the hint is TLS."""
        tls, address = self._target.tls, self._target.address
        socket_path = address.removeprefix("unix://") if address.startswith("unix://") else ""
        return rpc_disconnect(error, tls.describe() if tls else "", socket_path)

    def _pause(self, seconds: float) -> None:
        """Wait; a stop or a reconnect request ends the attempt."""
        self._wake.wait(seconds)
        if self._stopping.is_set():
            raise _Ended(None)
        if self._reconnect.is_set():
            raise _Ended(
                disconnect(
                    Ending.CERTIFICATE_ROTATION,
                    "the client certificate files changed; connecting with the new ones",
                )
            )

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
        self._reconnect.clear()
        self._wake.clear()
        if self._stopping.is_set():
            raise _Ended(None)
        with self._channel() as channel:
            self._state.falco_version = self._falco_version(channel)
            self._state.connected = True
            self._on_connected()
            if self._settings.transport is Transport.SUB:
                self._subscribe(channel)
            else:
                self._get_repeatedly(channel)

    def _falco_version(self, channel: grpc.Channel) -> str:
        """Falco's version; this first call also proves the connection and TLS work."""
        version_rpc = channel.unary_unary(falco_api.VERSION_PATH)
        call = version_rpc.future(falco_api.EMPTY_REQUEST, timeout=_VERSION_RPC_TIMEOUT)
        self._call = call
        if self._stopping.is_set():  # stop() ran before the call was there to cancel
            call.cancel()
            raise _Ended(None)
        try:
            raw = call.result()
        except grpc.FutureCancelledError:
            raise _Ended(None) from None
        except grpc.RpcError as error:
            if self._stopping.is_set():
                raise _Ended(None) from None
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
            self._call = self.current_get = call
            if self._stopping.is_set():
                raise _Ended(None)
            received = self._read(call)
            self.current_get = None
            self._pause(0 if received else interval)

    def _subscribe(self, channel: grpc.Channel) -> None:
        """One `sub` stream, polled every interval; returns when Falco ends it."""
        stopping, reconnect, wake = self._stopping, self._reconnect, self._wake
        interval = self._settings.poll_interval

        def requests() -> Iterator[bytes]:
            while not (stopping.is_set() or reconnect.is_set()):
                yield falco_api.EMPTY_REQUEST
                wake.wait(interval)
            # Ending the iterator half-closes the stream, and Falco then ends it after
            # its drain: only done to stop or to reconnect.

        call = channel.stream_stream(falco_api.SUB_PATH)(requests())
        self._call = call
        if self._stopping.is_set():
            raise _Ended(None)
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
            if self._stopping.is_set():
                raise _Ended(None) from None
            if self._stalled_call is call:
                self._stalled_call = None
                raise _Ended(
                    disconnect(
                        Ending.STALLED,
                        "no answer from Falco on an open call: the connection is half-open",
                    )
                ) from None
            raise
        finally:
            if received:
                state.last_event_time = time.time()
        return received

    def _decode_error(self, size: int) -> None:
        """Count an undecodable message; log at most one line per interval, with the count."""
        self._state.decode_errors += 1
        self._decode_errors.log(
            "decode",
            logging.WARNING,
            "skipped a Falco message that does not decode (invalid UTF-8 or corrupt)",
            size_bytes=size,
        )
