"""What an attacker can make the exporter spend, measured: the figures of docs/security and
docs/performance.md's "Under attack" section.

  python -m bench.attacks

Each part runs an exporter process with the HTTP input (on the event loop it would choose)
and measures, on loopback:
- CPU per MiB of body: garbage lines (`x`), JSON that is no event (`{}`), valid events,
  valid events alternating with garbage (never given up), and 99 garbage lines to each
  small valid event (given up: more garbage than events);
- the probes while four connections post 1 MiB of garbage in a loop: /liveness latency;
- a scrape of 100,000 series: how long it takes, and the longest wait of a Falco-like
  client posting one event at a time meanwhile (the ingest stall);
- the memory each idle keep-alive connection holds (RSS over 4,000 of them).
"""

from __future__ import annotations

import asyncio
import json
import platform
import socket
import statistics
import time

from bench.memory import EVENT, exporter, post_pods, request, until_received
from bench.run import cpu_seconds, rss_mib
from exporter.runtime.open_files import open_files_limit

# One request per connection (the reader waits for the close).
_POST = (
    b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n"
)
# Falco's own: one connection kept alive between posts.
_KEPT_POST = (
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
)
_MIB = 1024 * 1024
_SMALL_EVENT = b'{"rule":"r","priority":"Emergency"}'  # the smallest valid event
_BODIES = 16
_ATTACK_SECONDS = 10.0
_SERIES = 100_000
_CONNECTIONS = 4000


async def get(port: int, path: bytes, headers: bytes = b"") -> bytes:
    """A GET on a new connection; the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (path, headers))
    answer = await reader.read()
    writer.close()
    return answer


def body_of(line: bytes) -> bytes:
    """1 MiB of NDJSON made of `line`."""
    return b"\n".join([line] * (_MIB // (len(line) + 1)))


async def cpu_per_mib() -> list[tuple[str, float, float]]:
    """(body kind, CPU ms per MiB, longest answer ms) for each kind of 1 MiB body."""
    kinds = {
        "garbage lines (x)": b"x",
        "JSON that is no event ({})": b"{}",
        "valid events": json.dumps(EVENT).encode(),
        # As many garbage lines as events: never given up, every line is parsed (the most
        # a body can cost)...
        "valid events and garbage, alternating": json.dumps(EVENT).encode() + b"\nx",
        # ... while more garbage than events is given up after 100 bad lines.
        "99 garbage lines to each valid event": b"\n".join([b"x"] * 99 + [_SMALL_EVENT]),
    }
    results = []
    async with exporter("--http-input-address", "127.0.0.1:0", wait_for="serving HTTP") as run:
        assert run.input_port is not None
        for name, line in kinds.items():
            body = body_of(line)
            before, longest = cpu_seconds(run.process.pid), 0.0
            for _ in range(_BODIES):
                start = time.perf_counter()
                await request(run.input_port, _POST, body)
                longest = max(longest, time.perf_counter() - start)
            used = (cpu_seconds(run.process.pid) - before) / (_BODIES * len(body) / _MIB)
            results.append((name, used * 1000, longest * 1000))
    return results


async def probe_latencies(probes_port: int, until: float) -> list[float]:
    """/liveness every 50 ms until `until`: each answer's latency, ms."""
    latencies = []
    while time.monotonic() < until:
        start = time.perf_counter()
        await get(probes_port, b"/liveness")
        latencies.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.05)
    return latencies


async def probes_under_garbage() -> tuple[float, float, float]:
    """(p50, p99, max) of /liveness while 4 connections post garbage bodies in a loop."""
    async with exporter("--http-input-address", "127.0.0.1:0", wait_for="serving HTTP") as run:
        assert run.input_port is not None
        until = time.monotonic() + _ATTACK_SECONDS
        body = body_of(b"x")

        async def attacker() -> None:
            while time.monotonic() < until:
                await request(run.input_port or 0, _POST, body)

        attackers = [asyncio.create_task(attacker()) for _ in range(4)]
        latencies = await probe_latencies(run.probes_port, until)
        await asyncio.gather(*attackers)
    latencies.sort()
    return (
        statistics.median(latencies),
        latencies[int(len(latencies) * 0.99) - 1],
        latencies[-1],
    )


def _post_one(port: int, stop: list[bool], waits: list[float]) -> None:
    """A Falco-like client: one event per request on a keep-alive connection, timed."""
    body = json.dumps(EVENT).encode()
    request_bytes = _KEPT_POST % len(body) + body
    with socket.create_connection(("127.0.0.1", port)) as sock:
        while not stop:
            start = time.perf_counter()
            sock.sendall(request_bytes)
            answer = b""
            while b'{"accepted":1}' not in answer:
                answer += sock.recv(4096)
            waits.append(time.perf_counter() - start)


async def scrape_stall() -> tuple[float, float, float]:
    """At 100k series: (scrape s, the longest post meanwhile ms, the longest before ms)."""
    async with exporter("--http-input-address", "127.0.0.1:0", wait_for="serving HTTP") as run:
        assert run.input_port is not None
        await post_pods(run.input_port, 0, _SERIES)
        await until_received(run, _SERIES)
        stop: list[bool] = []
        waits: list[float] = []
        poster = asyncio.create_task(asyncio.to_thread(_post_one, run.input_port, stop, waits))
        await asyncio.sleep(2)
        before = max(waits, default=0.0)
        waits.clear()
        start = time.perf_counter()
        for _ in range(3):
            await get(run.metrics_port, b"/metrics", b"Accept-Encoding: gzip\r\n")
        scrape = (time.perf_counter() - start) / 3
        during = max(waits, default=0.0)
        stop.append(True)
        await poster
    return scrape, during * 1000, before * 1000


async def memory_per_connection() -> float:
    """KiB of RSS each idle keep-alive connection to the HTTP input holds."""
    if open_files_limit(_CONNECTIONS + 256) < _CONNECTIONS + 256:
        raise SystemExit(f"bench.attacks needs {_CONNECTIONS + 256} open files: raise ulimit -n")
    async with exporter(
        "--http-input-address", "127.0.0.1:0", "--http-input-max-connections-per-peer",
        str(_CONNECTIONS), wait_for="serving HTTP",
    ) as run:  # fmt: skip
        assert run.input_port is not None
        before = rss_mib(run.process.pid)
        held = [
            socket.create_connection(("127.0.0.1", run.input_port)) for _ in range(_CONNECTIONS)
        ]
        body = json.dumps(EVENT).encode()
        for sock in held:  # each becomes a keep-alive connection that posted once
            sock.sendall(_KEPT_POST % len(body) + body)
        for sock in held:
            sock.recv(4096)
        after = rss_mib(run.process.pid)
        for sock in held:
            sock.close()
    return (after - before) * 1024 / _CONNECTIONS


async def main() -> None:
    """Every part, as the Markdown of docs/performance.md."""
    print(f"{platform.machine()}, Python {platform.python_version()}, loopback\n")
    print("| body of 1 MiB | CPU ms per MiB | longest answer ms |\n|---|---:|---:|")
    for name, cpu, longest in await cpu_per_mib():
        print(f"| {name} | {cpu:.0f} | {longest:.0f} |")
    p50, p99, worst = await probes_under_garbage()
    print(
        f"\n/liveness under 4 garbage posters: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {worst:.1f} ms"
    )
    scrape, during, before = await scrape_stall()
    print(
        f"\nA gzip scrape of {_SERIES:,} series: {scrape * 1000:.0f} ms; a Falco-like post waited "
        f"at most {during:.1f} ms during scrapes ({before:.1f} ms before them)"
    )
    print(f"\nMemory per idle keep-alive connection: {await memory_per_connection():.1f} KiB")


if __name__ == "__main__":
    asyncio.run(main())
