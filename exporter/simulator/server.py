"""A gRPC server with Falco's output semantics, for tests and the demo.

Faithful where clients can tell (docs/falco-wire-contract.md#grpc-outputs-api):
- one process-wide queue that every `sub` and `get` call pops from, so two
  subscribers split the events;
- `sub` writes nothing until it reads a request, then drains the queue and waits
  for the next request;
- `get` drains the queue and ends with OK, possibly after zero messages;
- the version RPC answers; stopping ends open streams with OK, as Falco's
  shutdown and hot reload do.
Messages are kept as bytes, so a test can publish a message no real encoder writes.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

from exporter.falcopb import outputs_pb2, version_pb2
from exporter.inputs.grpc import api as falco_api


@dataclass(frozen=True)
class ServerTls:
    """Falco's grpc.cert_chain, grpc.private_key and grpc.root_certs, as files."""

    cert: Path
    key: Path
    ca: Path

    def credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS: Falco always requires a client certificate signed by its CA."""
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.ca.read_bytes(),
            require_client_auth=True,
        )


def version_response(version: str) -> version_pb2.response:
    """The version message Falco sends, parsed from a `major.minor.patch[-pre][+build]` text."""
    core, _, build = version.partition("+")
    numbers, _, prerelease = core.partition("-")
    major, minor, patch = ([int(part) for part in numbers.split(".")] + [0, 0, 0])[:3]
    return version_pb2.response(
        version=version,
        major=major,
        minor=minor,
        patch=patch,
        prerelease=prerelease,
        build=build,
        engine_version="0.50.0",
        engine_major=0,
        engine_minor=50,
        engine_patch=0,
    )


class SimulatedFalco:
    """Falco's outputs and version services over a real grpc.aio server."""

    def __init__(self, *, version: str = "0.43.0", hostname: str | None = None) -> None:
        self._version = version_response(version).SerializeToString()
        self._hostname = hostname
        self._queue: collections.deque[bytes] = collections.deque()
        self._server: grpc.aio.Server | None = None
        self._closing = asyncio.Event()
        self._streams: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self._writing = 0
        self.address = ""
        # The common name of each client certificate that called the version RPC.
        self.client_names: list[str] = []
        self._held = False
        self._peers: set[str] = set()  # every client connection a call came from
        self._gone: set[str] = set()  # those a test cut: nothing more is written to them

    @property
    def queued(self) -> int:
        """Events not yet written: waiting for a subscriber, or being written now.

        0 means every event published so far was delivered or lost with its stream.
        """
        return len(self._queue) + self._writing

    @property
    def subscribers(self) -> int:
        """Open `sub` streams."""
        return len(self._streams)

    def publish(self, messages: Iterable[outputs_pb2.response]) -> None:
        """Queue alerts, as Falco does when rules fire."""
        for message in messages:
            if self._hostname is not None:
                renamed = outputs_pb2.response()
                renamed.CopyFrom(message)
                renamed.hostname = self._hostname
                message = renamed  # noqa: PLW2901
            self._queue.append(message.SerializeToString())

    def hold(self) -> None:
        """Answer requests without sending events (they stay queued), like an idle Falco."""
        self._held = True

    def release(self) -> None:
        """Send queued events again."""
        self._held = False

    def forget_connections(self) -> None:
        """Write nothing more on the client connections seen so far: a test that has cut them
        calls this. gRPC may still hand this server a call read from one just before the cut;
        what it wrote there would be lost on the way and yet counted as delivered."""
        self._gone = set(self._peers)

    def publish_raw(self, payloads: Iterable[bytes]) -> None:
        """Queue message bytes exactly as given, valid or not."""
        self._queue.extend(payloads)

    async def start(self, address: str, tls: ServerTls | None = None) -> str:
        """Listen on `unix:///path` (no TLS, like Falco) or `host:port` (mutual TLS).

        Returns the address a client dials; port 0 is replaced by the bound port.
        """
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    falco_api.OUTPUTS_SERVICE,
                    {
                        "sub": grpc.stream_stream_rpc_method_handler(self._sub),
                        "get": grpc.unary_stream_rpc_method_handler(self._get),
                    },
                ),
                grpc.method_handlers_generic_handler(
                    falco_api.VERSION_SERVICE,
                    {"version": grpc.unary_unary_rpc_method_handler(self._version_rpc)},
                ),
            )
        )
        if address.startswith("unix://"):
            server.add_insecure_port(address)
            bound = address
        else:
            if tls is None:
                raise ValueError("Falco's TCP gRPC server requires mutual TLS")
            port = server.add_secure_port(address, tls.credentials())
            host = address.rsplit(":", 1)[0]
            bound = f"{host}:{port}"
        self._closing = asyncio.Event()
        await server.start()
        self._server = server
        self.address = bound
        return bound

    async def stop(self, grace: float = 2.0) -> None:
        """End every open stream with OK after its current drain, then close the server."""
        self._closing.set()
        if self._streams:
            await asyncio.wait(set(self._streams), timeout=grace)
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def _sub(
        self, _requests: object, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while True:
                read = asyncio.ensure_future(context.read())
                await asyncio.wait({read, closing}, return_when=asyncio.FIRST_COMPLETED)
                if closing.done():
                    read.cancel()
                    return
                if read.result() is grpc.aio.EOF:
                    return
                await self._drain(context)
        finally:
            closing.cancel()
            self._streams.discard(task)

    async def _get(self, _request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        await self._drain(context)

    async def _drain(self, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        peer = context.peer()
        self._peers.add(peer)
        if peer in self._gone:
            return
        while self._queue and not self._closing.is_set() and not self._held:
            self._writing += 1
            try:
                await context.write(self._queue.popleft())
            finally:
                self._writing -= 1
            self.delivered += 1

    async def _version_rpc(
        self, _request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        for name in context.auth_context().get("x509_common_name", []):
            self.client_names.append(name.decode())
        return self._version


async def replay(
    falco: SimulatedFalco,
    messages: list[outputs_pb2.response],
    *,
    rate: float,
    loop: bool,
) -> None:
    """Publish messages at `rate` per second (0: all at once), once or forever."""
    loop_time = asyncio.get_running_loop().time
    interval = 1.0 / rate if rate > 0 else 0.0
    next_at = loop_time()
    while True:
        for message in messages:
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - loop_time()))
            falco.publish([message])
        if not loop:
            return
        if not interval:
            await asyncio.sleep(1.0)
