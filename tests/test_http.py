"""The HTTP endpoints: metrics format, probes on both ports, landing page, TLS on /metrics."""

from __future__ import annotations

import asyncio
import gzip
import signal
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from exporter.inputs.http.input import HttpInput
from exporter.runtime.signals import stop_on_signals
from exporter.simulator.certs import CertPaths
from exporter.simulator.server import SimulatedFalco
from tests.support import (
    ExporterFor,
    LogLines,
    MakeExporter,
    counted,
    eventually,
    fetch,
    input_of,
    parse_metrics,
    response,
    scrape,
    serving_flags,
)
from tests.support.raw_http import exchange


async def test_metrics_is_text_format_0_0_4_with_a_typed_counter(
    falco: SimulatedFalco, exporter_for: ExporterFor
) -> None:
    """Content type 0.0.4; `# TYPE falco_events counter` names the same family, no _total."""
    falco.publish([response()])
    exporter = await exporter_for(falco)
    url = f"http://127.0.0.1:{exporter.main_http.port}/metrics"

    async def counted() -> bool:
        return "\nfalco_events{" in (await fetch(url))[1]

    await eventually(counted, message="an event on /metrics")
    status, body, headers = await fetch(url)
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert body.startswith(
        "# HELP falco_events Falco events seen by this exporter, by rule, priority and origin.\n"
        "# TYPE falco_events counter\n"
    )
    assert "falco_events_total" not in body
    families = parse_metrics(body)
    for name in (
        "falco_exporter_events_received",
        "falco_exporter_connected",
        "falco_exporter_falco_events_series",
        "falco_exporter_build_info",
        "process_resident_memory_bytes",
    ):
        assert name in families, name
    assert set(families["falco_exporter_falco_events_series"].values()) == {1.0}


async def test_probes_follow_the_connection(
    falco: SimulatedFalco, exporter_for: ExporterFor, make_exporter: MakeExporter
) -> None:
    """Liveness is always OK; readiness is 503 without Falco and 200 with it, on both ports."""
    lonely = await make_exporter(client_socket="unix:///nonexistent/falco.sock")
    main, probes = lonely.main_http.port, lonely.probes_http.port
    assert (await fetch(f"http://127.0.0.1:{probes}/liveness"))[0] == 200
    assert (await fetch(f"http://127.0.0.1:{main}/livez"))[0] == 200
    status, body, _ = await fetch(f"http://127.0.0.1:{probes}/readiness")
    assert status == 503
    assert "unix:///nonexistent/falco.sock disconnected" in body
    assert (await fetch(f"http://127.0.0.1:{main}/readyz"))[0] == 503

    connected = await exporter_for(falco)
    url = f"http://127.0.0.1:{connected.main_http.port}/readyz"

    async def ready() -> bool:
        return (await fetch(url))[0] == 200

    await eventually(ready, message="ready once connected")
    assert (await fetch(f"http://127.0.0.1:{connected.probes_http.port}/readiness"))[0] == 200


async def test_landing_page_links_to_metrics(make_exporter: MakeExporter) -> None:
    """`/` is a small HTML page linking to /metrics."""
    exporter = await make_exporter(client_socket="unix:///nonexistent/falco.sock")
    status, body, headers = await fetch(f"http://127.0.0.1:{exporter.main_http.port}/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert 'href="metrics"' in body


async def test_a_shutdown_phase_cut_short_still_closes_every_listener(
    make_exporter: MakeExporter, logs: LogLines
) -> None:
    """A request that never finishes holds the HTTP input's phase; the listeners still close."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    _reader, writer = await asyncio.open_connection("127.0.0.1", exporter.ports["http_input"])
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    await writer.drain()
    await eventually(lambda: bool(input_of(exporter, HttpInput).server.connections))
    await exporter.stop(grace=0.05)
    writer.close()
    assert [r["phase"] for r in logs.matching("shutdown phase took too long; cut short")] == [
        "inputs"
    ]
    for port in (exporter.main_http.port, exporter.probes_http.port):
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)


async def test_signal_handlers_are_restored_after_the_block() -> None:
    """stop_on_signals gives SIGINT and SIGTERM back as it found them."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with stop_on_signals(asyncio.Event()):
        pass
    assert {signum: signal.getsignal(signum) for signum in before} == before


async def test_metrics_are_gzipped_when_asked_and_no_answer_names_a_version(
    falco: SimulatedFalco, exporter_for: ExporterFor
) -> None:
    """Prometheus asks for gzip and gets it; plain without the header; no version anywhere."""
    exporter = await exporter_for(falco, http_input_address="127.0.0.1:0")
    falco.publish([response()])

    await counted(exporter, 1, message="one counted")
    url = f"http://127.0.0.1:{exporter.main_http.port}/metrics"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            compressed = await answer.read()
            assert answer.headers["Server"] == "falco-exporter"
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as answer:
            assert "Content-Encoding" not in answer.headers
            plain = await answer.read()
    assert gzip.decompress(compressed).split(b"\n")[:3] == plain.split(b"\n")[:3]
    assert b"falco_events{" in plain
    probes = f"http://127.0.0.1:{exporter.probes_http.port}/liveness"
    post_url = f"http://127.0.0.1:{exporter.ports['http_input']}/"
    async with aiohttp.ClientSession() as session:
        async with session.get(probes) as answer:
            assert answer.headers["Server"] == "falco-exporter"
        async with session.post(post_url, data=b"{}") as answer:
            assert "Server" not in answer.headers


async def test_every_certificate_held_has_its_expiry_on_metrics(
    falco: SimulatedFalco, exporter_for: ExporterFor, certs: CertPaths
) -> None:
    """Client, its CA, the HTTP input's: each role with its file's notAfter, as Unix time."""
    exporter = await exporter_for(
        falco,
        http_input_address="127.0.0.1:0",
        **serving_flags(certs, "http_input"),
    )
    samples = await scrape(
        exporter.main_http.port, "falco_exporter_certificate_expiry_timestamp_seconds"
    )

    def not_after(path: Path) -> float:
        return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()

    assert {dict(key)["role"]: (dict(key)["path"], value) for key, value in samples.items()} == {
        "client": (str(certs.client_cert), not_after(certs.client_cert)),
        "client_ca": (str(certs.ca), not_after(certs.ca)),
        "http_input": (str(certs.server_cert), not_after(certs.server_cert)),
        "http_input_ca": (str(certs.ca), not_after(certs.ca)),
    }


async def test_main_and_probes_ports_refuse_what_they_do_not_serve(
    make_exporter: MakeExporter,
) -> None:
    """HEAD gives the head alone; a wrong method 405 with Allow, a wrong path 404, garbage
    400 and a large body 413; and the port goes on serving scrapes."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    main, probes = exporter.main_http.port, exporter.probes_http.port

    reader, writer = await asyncio.open_connection("127.0.0.1", main)
    writer.write(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    whole = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, rest = whole.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 1000
    assert rest == b""

    wrong_method = await exchange(main, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert (wrong_method.status, wrong_method.headers["allow"]) == (405, "GET, HEAD")
    assert (await exchange(main, b"GET /nope HTTP/1.1\r\n\r\n")).status == 404
    assert (await exchange(main, b"NOT HTTP AT ALL\r\n\r\n")).status == 400
    large = b"GET /metrics HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n"
    assert (await exchange(main, large)).status == 413
    assert (await exchange(probes, b"GET /metrics HTTP/1.1\r\n\r\n")).status == 404
    assert (await exchange(probes, b"DELETE /readiness HTTP/1.1\r\n\r\n")).status == 405
    status, body, headers = await fetch(f"http://127.0.0.1:{main}/metrics")
    assert status == 200
    assert "falco_exporter_build_info" in body
    assert headers["Vary"] == "Accept-Encoding"
