"""The HTTP input fuzzed on the wire: raw bytes, methods, paths, headers, encodings, lengths.

One exporter runs for the whole property on a thread of its own; each example is sent
on a fresh connection that the client then half-closes, so an incomplete request ends
at once instead of waiting for the read timeout. Whatever arrives: an answer that is a
known 4xx or a 200, never a 500; afterwards the process still serves and the counter
holds exactly the events the answers said were accepted.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.app import Exporter
from exporter.inputs.http.rejections import REASONS
from exporter.settings.load import load_config
from tests.support import EVENT, EVENT_BODY, parse_metrics

ALLOWED = {200} | {reason.status for reason in REASONS if reason.status}


@dataclass
class Running:
    """An exporter serving on a background thread's event loop."""

    input_port: int
    metrics_port: int


@pytest.fixture(scope="module")
def running_exporter() -> Iterator[Running]:
    """One HTTP-only exporter for the whole module, on its own thread and loop."""
    ready = threading.Event()
    ports: list[int] = []
    holder: dict[str, object] = {}

    async def serve() -> None:
        config = load_config(
            {
                "listen_address": "127.0.0.1:0",
                "probes_listen_address": "127.0.0.1:0",
                "http_input_address": "127.0.0.1:0",
                "http_input_read_timeout": "2s",
            },
            environ={},
        )
        exporter = Exporter(config)
        stop = asyncio.Event()
        holder["stop"] = stop
        holder["loop"] = asyncio.get_running_loop()
        await exporter.start()
        ports.extend([exporter.ports["http_input"], exporter.main_http.port])
        ready.set()
        await stop.wait()
        await exporter.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "exporter did not start"
    yield Running(*ports)
    loop = holder["loop"]
    stop = holder["stop"]
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert isinstance(stop, asyncio.Event)
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


def send(port: int, data: bytes) -> list[tuple[int, bytes]]:
    """Send, half-close, and read every response until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        try:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed before we finished: what was answered is read below
        received = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return parse_responses(received)


def parse_responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in a byte stream, 100 Continue left out."""
    answers = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        assert separator, f"a response cut short: {data[:200]!r}"
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        answers.append((status, rest[:length]))
        data = rest[length:]
    return [(status, body) for status, body in answers if status != 100]


def accepted_in(body: bytes) -> int:
    """The `accepted` count of a JSON answer; 0 for a plain-text refusal."""
    try:
        answer = json.loads(body)
    except ValueError:
        return 0
    return int(answer.get("accepted", 0)) if isinstance(answer, dict) else 0


bodies = st.one_of(
    st.just(EVENT_BODY),
    st.lists(st.just(EVENT_BODY), min_size=1, max_size=4).map(b"\n".join),
    st.binary(max_size=400),
    st.just(b"10:15:00.1: Warning Shell spawned (user=root)"),
    st.builds(lambda s: json.dumps({**EVENT, "rule": s}).encode(), st.text(max_size=50)),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(0, 20_000)),
)
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda body: body,
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": lambda body: body,
    "identity": lambda body: body,
}


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A request that is HTTP in parts: any of its pieces may be wrong."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(min_size=1, max_size=500))
    method = draw(st.sampled_from([b"POST", b"POST", b"GET", b"PUT", b"DELETE", b"P@ST"]))
    path = draw(st.sampled_from([b"/", b"/events", b"/?x=1", b"/nope", b"*", b"/%00"]))
    encoding = draw(st.sampled_from(list(ENCODERS)))
    body = draw(bodies)
    if draw(st.booleans()):
        body = ENCODERS[encoding](body)
    headers = [b"Host: 127.0.0.1", b"User-Agent: falcosecurity/falco"]
    headers.append(
        b"Content-Type: " + draw(st.sampled_from([b"application/json", b"text/plain", b""]))
    )
    if encoding:
        headers.append(b"Content-Encoding: " + encoding.encode())
    length = draw(st.sampled_from(["exact", "exact", "short", "long", "none", "chunked", "junk"]))
    if length == "chunked":
        headers.append(b"Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    elif length != "none":
        declared = {
            "exact": str(len(body)),
            "short": str(max(0, len(body) - 3)),
            "long": str(len(body) + 7),
            "junk": draw(st.sampled_from(["-1", "abc", "1e3", "99999999999999999999"])),
        }[length]
        headers.append(b"Content-Length: " + declared.encode())
    headers.extend(
        draw(
            st.lists(
                st.sampled_from(
                    [b"Expect: 100-continue", b"TE: gzip", b"Connection: close", b"X: \xff\x00"]
                ),
                max_size=2,
            )
        )
    )
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9"]))
    return b"%s %s %s\r\n%s\r\n\r\n%s" % (method, path, version, b"\r\n".join(headers), body)


def test_any_request_on_the_wire_gets_a_known_answer_and_counts_add_up(
    running_exporter: Running,
) -> None:
    """200 or a 4xx the README lists, never a 500; then alive, and exactly what was accepted."""
    accepted = 0
    statuses: set[int] = set()

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(requests())
    def any_request(request: bytes) -> None:
        nonlocal accepted
        for status, body in send(running_exporter.input_port, request):
            assert status in ALLOWED, (status, body, request[:300])
            statuses.add(status)
            accepted += accepted_in(body)

    any_request()
    assert accepted > 0, "the fuzzing never sent an acceptable event"
    assert len(statuses) >= 4, f"the fuzzing reached too few answers: {statuses}"
    [(status, body)] = send(
        running_exporter.input_port,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(EVENT_BODY), EVENT_BODY),
    )
    assert (status, accepted_in(body)) == (200, 1)
    with socket.create_connection(("127.0.0.1", running_exporter.metrics_port), timeout=10) as c:
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := c.recv(65536):
            received += chunk
    families = parse_metrics(received.partition(b"\r\n\r\n")[2].decode())
    assert sum(families["falco_events"].values()) == accepted + 1
