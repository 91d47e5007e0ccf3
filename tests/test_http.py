"""The HTTP endpoints: metrics format, probes on both ports, landing page, TLS on /metrics."""

from __future__ import annotations

from typing import Any

from exporter.simulator.server import SimulatedFalco
from tests.conftest import MakeExporter
from tests.support import eventually, fetch, parse_metrics, response


async def test_metrics_is_text_format_0_0_4_with_a_typed_counter(
    falco: SimulatedFalco, exporter_for: Any
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
    falco: SimulatedFalco, exporter_for: Any, make_exporter: MakeExporter
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
