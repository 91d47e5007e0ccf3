"""Benchmark of the HTTP input, loaded the way Falco loads it: one JSON event per POST.

  python -m bench.http_input [--seconds 10] [--sequential 5000] [--exporter-path DIR]

Two loads: `wrk` with 8 keep-alive connections, and one connection posting sequentially
(Falco's case: one thread, each POST waits for its answer). Reported per server: events
per server CPU-second, requests per second, round trip p50/p99, and exactness (the
server's count against the requests completed). The floor is the cheapest Python server
that reads a request and answers 200 (bench/floor_server.py); ours is reported as a ratio
to it. The compiled reference is a Go net/http server doing the same work
(bench/compiled_server/main.go), built from Debian's packages golang-go and
golang-github-prometheus-client-golang-dev when they are installed; the exporter's ratios
to it follow the table. `--exporter-path` runs the exporter from another checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.run import cpu_seconds

REPO = Path(__file__).resolve().parent.parent
GOPATH = Path("/usr/share/gocode")  # where Debian's Go library packages put their sources
EVENT = (REPO / "exporter/simulator/data/sample-events.jsonl").read_bytes().splitlines()[0]
REQUEST = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1:2801\r\nUser-Agent: falcosecurity/falco\r\n"
    b"Accept: */*\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(EVENT), EVENT)
)
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[%s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "falcosecurity/falco"
"""


@dataclass
class Server:
    """A server process under test and the port it takes POSTs on."""

    name: str
    process: asyncio.subprocess.Process
    port: int
    metrics_port: int | None


@dataclass
class Result:
    """One load against one server."""

    server: str
    loop: str
    load: str
    requests: int
    counted: int | None
    cpu: float
    wall: float
    p50_ms: float
    p99_ms: float

    @property
    def per_cpu_second(self) -> float:
        """Events per server CPU-second."""
        return self.requests / self.cpu if self.cpu else 0.0


@dataclass(frozen=True)
class Variant:
    """One server to measure: the exporter of a checkout with some flags, the floor, or the
    compiled reference (`binary`)."""

    name: str
    path: Path | None  # None: the floor, or the compiled server when `binary` is set
    args: tuple[str, ...] = ()
    loop: str = "asyncio"
    binary: Path | None = None


@asynccontextmanager
async def started(variant: Variant) -> AsyncIterator[Server]:
    """The variant's server, running."""
    if variant.binary is not None:
        async with compiled_server(variant.binary) as server:
            yield server
    elif variant.path is None:
        async with floor_server(variant.args) as server:
            yield server
    else:
        async with exporter(variant.path, variant.args) as server:
            yield server


def build_compiled_server(folder: Path) -> Path | None:
    """bench/compiled_server/main.go built with Debian's Go and client_golang, or None
    (with the reason printed) where they are not installed."""
    go = shutil.which("go")
    if go is None or not (GOPATH / "src/github.com/prometheus/client_golang").is_dir():
        print(
            "no compiled reference: apt-get install golang-go "
            "golang-github-prometheus-client-golang-dev",
            file=sys.stderr,
        )
        return None
    binary = folder / "compiled_server"
    subprocess.run(
        [go, "build", "-o", str(binary), str(REPO / "bench/compiled_server/main.go")],
        check=True,
        env={**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH),
             "GOCACHE": str(folder / "gocache"), "GOFLAGS": ""},
    )  # fmt: skip
    return binary


@asynccontextmanager
async def compiled_server(binary: Path) -> AsyncIterator[Server]:
    """The Go reference: it prints its input and metrics ports."""
    process = await asyncio.create_subprocess_exec(str(binary), stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        port, metrics_port = map(int, (await process.stdout.readline()).split())
        yield Server("compiled Go server", process, port, metrics_port)
    finally:
        await _stop(process)


@asynccontextmanager
async def exporter(path: Path, args: tuple[str, ...] = ()) -> AsyncIterator[Server]:
    """The exporter in HTTP-only mode (the sidecar's), from the checkout at `path`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--http-input-address", "127.0.0.1:0",
        "--listen-address", "127.0.0.1:0", "--probes-listen-address", "127.0.0.1:0",
        "--log-format", "json", *args,
        stdout=asyncio.subprocess.PIPE, cwd=path,
        env={**os.environ, "PYTHONPATH": str(path)},
    )  # fmt: skip
    try:
        serving = await _log_line(process, "serving HTTP")
        yield Server("exporter", process, serving["http_input_port"], serving["metrics_port"])
    finally:
        await _stop(process)


async def _log_line(process: asyncio.subprocess.Process, event: str) -> dict[str, int]:
    assert process.stdout is not None
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"the server exited before logging {event!r}")
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            return dict(record)


@asynccontextmanager
async def floor_server(args: tuple[str, ...] = ()) -> AsyncIterator[Server]:
    """The cheapest Python server that reads a request and answers 200."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.floor_server", *args,
        stdout=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        port = int((await process.stdout.readline()).decode())
        yield Server("floor", process, port, None)
    finally:
        await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def counted(server: Server) -> int | None:
    """sum(falco_events) on the exporter's /metrics."""
    if server.metrics_port is None:
        return None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.metrics_port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in body.splitlines()
        if line.startswith("falco_events{")
    )


Load = Callable[[], Awaitable[tuple[int, float, float]]]


async def measure(server: Server, name: str, load: Load) -> Result:
    """Run a load (returning requests, p50 ms, p99 ms) and take the server's CPU and count."""
    before = await counted(server)
    cpu = cpu_seconds(server.process.pid)
    started = time.monotonic()
    requests, p50, p99 = await load()
    wall = time.monotonic() - started
    cpu = cpu_seconds(server.process.pid) - cpu
    after = await counted(server)
    growth = None if after is None or before is None else after - before
    return Result(server.name, "", name, requests, growth, cpu, wall, p50, p99)


async def with_wrk(server: Server, seconds: int, script: Path) -> Result:
    """8 keep-alive connections from wrk for `seconds`."""

    async def load() -> tuple[int, float, float]:
        wrk = await asyncio.create_subprocess_exec(
            "wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-s", str(script),
            f"http://127.0.0.1:{server.port}/", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output = (await wrk.communicate())[0].decode()
        requests = re.search(r"(\d+) requests in", output)
        assert requests, output
        p50, p99 = _wrk_percentile(output, "50%"), _wrk_percentile(output, "99%")
        return int(requests.group(1)), p50, p99

    return await measure(server, "wrk, 8 connections", load)


def _wrk_percentile(output: str, which: str) -> float:
    match = re.search(rf"{re.escape(which)}\s+([\d.]+)(us|ms|s)\b", output)
    assert match, output
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return float(match.group(1)) * scale


def _sequential_posts(port: int, count: int) -> list[float]:
    """Falco's pattern: one connection, each POST waits for its answer. Round trips (s)."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            started = time.perf_counter()
            connection.sendall(REQUEST)
            answer = b""
            while b"\r\n\r\n" not in answer or not _complete(answer):
                answer += connection.recv(65536)
            times.append(time.perf_counter() - started)
    return times


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
    return length is not None and len(body) >= int(length.group(1))


async def sequential(server: Server, count: int) -> Result:
    """One connection posting `count` events one after another."""

    async def load() -> tuple[int, float, float]:
        times = await asyncio.to_thread(_sequential_posts, server.port, count)
        quantiles = statistics.quantiles(times, n=100)
        return count, quantiles[49] * 1000, quantiles[98] * 1000

    return await measure(server, "1 connection, sequential", load)


def table(results: list[Result]) -> str:
    """The Markdown table of docs/performance.md."""
    floors = {(r.loop, r.load): r.per_cpu_second for r in results if r.server == "floor"}
    lines = [
        "| server | loop | load | requests | events per server CPU-s | ratio to floor "
        "(same loop) | req/s | p50 ms | p99 ms | counted |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        floor = floors.get((r.loop, r.load)) or floors.get(("asyncio", r.load))
        ratio = r.per_cpu_second / floor if floor else 0.0
        exact = "n/a" if r.counted is None else f"{r.counted} of {r.requests}"
        lines.append(
            f"| {r.server} | {r.loop} | {r.load} | {r.requests} | {r.per_cpu_second:,.0f} | "
            f"{ratio:.2f} | "
            f"{r.requests / r.wall:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {exact} |"
        )
    compiled = {r.load: r for r in results if r.server == "compiled Go server"}
    if compiled:
        lines.append("")
        for r in results:
            reference = compiled.get(r.load)
            if r.server == "exporter" and reference is not None:
                lines.append(
                    f"- exporter on {r.loop}, {r.load}: "
                    f"{r.per_cpu_second / reference.per_cpu_second:.2f} of the compiled server's "
                    f"events per CPU-second; round trip p50 {r.p50_ms / reference.p50_ms:.2f} "
                    "times its"
                )
    return "\n".join(lines)


async def run(seconds: int, count: int, variants: list[Variant]) -> str:
    """Every server under both loads; the table."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "post.lua"
        script.write_text(WRK_SCRIPT % EVENT.decode())
        for variant in variants:
            async with started(variant) as server:
                server.name = variant.name
                for result in (
                    await with_wrk(server, seconds, script),
                    await sequential(server, count),
                ):
                    result.loop = variant.loop
                    results.append(result)
    return table(results)


def variants(other_checkouts: list[Path], compiled: Path | None) -> list[Variant]:
    """The compiled reference, the floor and this exporter on each loop there is, then
    other checkouts as they run."""
    loops = ["asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        loops.append("uvloop")
    chosen = [Variant("compiled Go server", None, (), "Go", compiled)] if compiled else []
    chosen += [
        Variant("floor", None, ("--uvloop",) if loop == "uvloop" else (), loop) for loop in loops
    ]
    chosen += [Variant("exporter", REPO, ("--event-loop", loop), loop) for loop in loops]
    # Another checkout runs on asyncio's loop: with --event-loop where it has the flag (an
    # older one has none, and only that loop).
    chosen += [
        Variant(f"exporter at {path}", path, _asyncio_flag(path), "asyncio")
        for path in other_checkouts
    ]
    return chosen


def _asyncio_flag(checkout: Path) -> tuple[str, ...]:
    sources = (checkout / "exporter").rglob("*.py")
    if any("event-loop" in source.read_text(encoding="utf-8") for source in sources):
        return ("--event-loop", "asyncio")
    return ()


def main() -> None:
    """Parse the arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--sequential", type=int, default=20000)
    parser.add_argument(
        "--exporter-path",
        type=Path,
        action="append",
        default=[],
        help="another checkout to measure beside this one (repeatable)",
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        compiled = build_compiled_server(Path(folder))
        chosen = variants(options.exporter_path, compiled)
        print(asyncio.run(run(options.seconds, options.sequential, chosen)))


if __name__ == "__main__":
    main()
