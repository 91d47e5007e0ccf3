"""The benchmark's Falco: the simulator in a process of its own, driven over stdin.

Running in its own process keeps its CPU out of the consumer's figures. Commands,
one per line; each is answered with one line on stdout:
  publish N            queue N sample events (about 500 bytes each), answer "ok"
  publish-pod POD      queue one event whose k8s.pod.name is POD, answer "ok"
  churn N              queue N events, each with a pod name never used before, answer "ok"
  flood RATE           from now on queue RATE events per second (0 stops), answer "ok"
  delivered            answer the number of events written to clients so far
A second argument, a path, serves on that unix socket instead (no TLS, as Falco).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from exporter.falcopb import outputs_pb2
from exporter.simulator.certs import CertPaths
from exporter.simulator.events import bundled_events_path, load_responses
from exporter.simulator.server import ServerTls, SimulatedFalco

_FLOOD_TICK = 0.01


async def main(certs_dir: Path, unix_socket: str = "") -> None:
    """Serve on a loopback port with mutual TLS (or on `unix_socket`, as Falco does without
    TLS); print the address, then obey stdin."""
    certs = CertPaths.in_directory(certs_dir)
    falco = SimulatedFalco()
    if unix_socket:
        address = await falco.start(f"unix://{unix_socket}")
    else:
        address = await falco.start(
            "127.0.0.1:0", ServerTls(certs.server_cert, certs.server_key, certs.ca)
        )
    samples = load_responses(bundled_events_path())
    payloads = [message.SerializeToString() for message in samples]
    template = samples[0]
    churn_names = (f"churn-{n}" for n in itertools.count())
    flood: asyncio.Task[None] | None = None
    print(address, flush=True)

    def with_pod(pod: str) -> bytes:
        message = outputs_pb2.response()
        message.CopyFrom(template)
        message.output_fields["k8s.pod.name"] = pod
        return message.SerializeToString()

    async def flood_at(rate: float) -> None:
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        cycle = itertools.cycle(payloads)
        while True:
            due = int((loop.time() - start) * rate)
            falco.publish_raw(next(cycle) for _ in range(due - sent))
            sent = due
            await asyncio.sleep(_FLOOD_TICK)

    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        command, _, argument = line.partition(" ")
        if command == "publish":
            count = int(argument)
            falco.publish_raw(payloads[n % len(payloads)] for n in range(count))
        elif command == "publish-pod":
            falco.publish_raw([with_pod(argument)])
        elif command == "churn":
            falco.publish_raw(with_pod(next(churn_names)) for _ in range(int(argument)))
        elif command == "flood":
            if flood is not None:
                flood.cancel()
                flood = None
            if float(argument) > 0:
                flood = asyncio.create_task(flood_at(float(argument)))
        elif command == "delivered":
            print(falco.delivered, flush=True)
            continue
        print("ok", flush=True)
    await falco.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else ""))
