"""The limits Python can reach: readers that only receive and parse Falco's messages.

  python -m bench.bare_readers aio-sub|sync-get ADDRESS CERTS_DIR COUNT

Each connects (mutual TLS), prints "ready", reads until COUNT messages have been
parsed, prints "done" and exits. The driver measures the process's CPU time between
the two lines from /proc, exactly as it does for the exporter.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import grpc
import grpc.aio
import grpc.experimental

from exporter.falcopb import outputs_pb2
from exporter.inputs.grpc import api as falco_api
from exporter.simulator.certs import CertPaths

POLL_INTERVAL = 0.05


def credentials(certs_dir: Path) -> grpc.ChannelCredentials:
    """The client side of the benchmark's mutual TLS."""
    certs = CertPaths.in_directory(certs_dir)
    return grpc.ssl_channel_credentials(
        certs.ca.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )


async def aio_sub(address: str, certs_dir: Path, count: int) -> None:
    """grpc.aio `sub` stream, a request every poll interval."""
    decode = outputs_pb2.response.FromString
    async with grpc.aio.secure_channel(address, credentials(certs_dir)) as channel:
        await channel.unary_unary(falco_api.VERSION_PATH)(falco_api.EMPTY_REQUEST)
        call = channel.stream_stream(falco_api.SUB_PATH)()

        async def poll() -> None:
            while True:
                await call.write(falco_api.EMPTY_REQUEST)
                await asyncio.sleep(POLL_INTERVAL)

        poller = asyncio.create_task(poll())
        print("ready", flush=True)
        for _ in range(count):
            decode(await call.read())
        print("done", flush=True)
        poller.cancel()
        call.cancel()


def sync_get(address: str, certs_dir: Path, count: int) -> None:
    """Synchronous `get` called again and again, single-threaded unary-stream."""
    decode = outputs_pb2.response.FromString
    options = [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]
    with grpc.secure_channel(address, credentials(certs_dir), options=options) as channel:
        channel.unary_unary(falco_api.VERSION_PATH)(falco_api.EMPTY_REQUEST)
        get = channel.unary_stream(falco_api.GET_PATH)
        print("ready", flush=True)
        received = 0
        while received < count:
            before = received
            for raw in get(falco_api.EMPTY_REQUEST):
                decode(raw)
                received += 1
            if received == before:
                time.sleep(POLL_INTERVAL)
        print("done", flush=True)


if __name__ == "__main__":
    kind, target, certs_path, total = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    if kind == "aio-sub":
        asyncio.run(aio_sub(target, certs_path, total))
    else:
        sync_get(target, certs_path, total)
