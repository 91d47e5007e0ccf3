"""Faults between the exporter and Falco: cuts, half-open connections, restart storms.

Falco's API has no acknowledgements: an event Falco wrote into a connection that then
dies in flight is gone (Falco already popped it). So a cut while Falco is quiet must
lose nothing and count nothing twice, and a cut at any moment must never count an
event twice (at most once); the simulator's hold() makes the quiet moments.
"""

from __future__ import annotations

import asyncio

from exporter.app import Exporter
from exporter.simulator.certs import CertPaths
from exporter.simulator.server import SimulatedFalco
from tests.support import (
    ExporterFor,
    MakeExporter,
    client_flags,
    counted,
    eventually,
    fetch,
    response,
    sum_by,
    tls_of,
    total_events,
)
from tests.support.faults import FaultProxy


async def exporter_via(
    proxy: FaultProxy, certs: CertPaths, make_exporter: MakeExporter, **flags: object
) -> Exporter:
    """An exporter dialling Falco through the proxy (TLS name: localhost)."""
    return await make_exporter(**client_flags(certs, f"127.0.0.1:{proxy.port}"), **flags)


async def ready_is(exporter: Exporter, status: int) -> bool:
    """Whether /readyz answers `status`."""
    return (await fetch(f"http://127.0.0.1:{exporter.main_http.port}/readyz"))[0] == status


async def test_half_open_connection_is_replaced_via_keepalive(
    falco: SimulatedFalco, proxy: FaultProxy, certs: CertPaths, make_exporter: MakeExporter
) -> None:
    """A stalled connection (no FIN, no RST) is detected by keepalive pings and replaced."""
    exporter = await exporter_via(
        proxy, certs, make_exporter, keepalive_time="1s", keepalive_timeout="1s"
    )
    await eventually(lambda: ready_is(exporter, 200), message="ready")
    falco.publish(response() for _ in range(10))
    await counted(exporter, 10, message="10 before the stall")
    proxy.stall(new_connections=True)
    loop = asyncio.get_running_loop()
    stalled_at = loop.time()
    await eventually(
        lambda: ready_is(exporter, 503),
        timeout=20,
        message="readiness failing once the stall is detected",
    )
    # keepalive_time + keepalive_timeout (2 s here) and the checks' own pace: inside 10 s.
    assert loop.time() - stalled_at < 10
    proxy.restore()
    await eventually(lambda: proxy.connections >= 2, timeout=20, message="a new connection")
    await eventually(lambda: ready_is(exporter, 200), timeout=20, message="ready again")
    falco.publish(response() for _ in range(10))
    await eventually(lambda: falco.queued == 0, message="the new events delivered")
    await counted(exporter, 20, message="10 more after the stall")
    assert falco.delivered == 20


async def test_cuts_during_a_steady_stream_count_every_event_once(
    falco: SimulatedFalco, proxy: FaultProxy, certs: CertPaths, make_exporter: MakeExporter
) -> None:
    """Steady events and a reset every round while Falco is quiet: exact counts, no doubles."""
    exporter = await exporter_via(proxy, certs, make_exporter)
    await eventually(lambda: ready_is(exporter, 200), message="ready")
    stop = asyncio.Event()

    async def steady() -> None:
        while not stop.is_set():
            falco.publish(response(fields={"k8s.pod.name": "steady"}) for _ in range(20))
            await asyncio.sleep(0.02)  # the event source's pace, not a wait for a condition

    feeder = asyncio.create_task(steady())
    try:
        for _ in range(5):
            await eventually(lambda: falco.delivered >= 100, message="some events flowed")
            falco.hold()
            await counted(
                exporter,
                lambda: falco.delivered,
                message="everything delivered is counted",
            )
            proxy.cut()
            falco.forget_connections()
            falco.release()
            before = proxy.connections
            await eventually(lambda b=before: proxy.connections > b, message="reconnected")
    finally:
        stop.set()
        await feeder
    await eventually(lambda: falco.queued == 0, message="queue drained")
    await counted(exporter, lambda: falco.delivered, message="all counted")
    # Five resets, five new connections: gRPC's channel reconnects by itself when a reset
    # lands between two calls, and the exporter's loop does when it breaks a call.
    assert proxy.connections >= 6


async def test_cuts_at_any_moment_never_count_an_event_twice(
    falco: SimulatedFalco, proxy: FaultProxy, certs: CertPaths, make_exporter: MakeExporter
) -> None:
    """Resets mid-stream may lose events in flight (Falco has no acks) but never double one."""
    exporter = await exporter_via(proxy, certs, make_exporter)
    await eventually(lambda: ready_is(exporter, 200), message="ready")
    for round_number in range(5):
        falco.publish(response(rule=f"round {round_number}") for _ in range(2000))
        await eventually(lambda: falco.delivered > 0, message="delivery started")
        before = proxy.connections
        proxy.cut()
        falco.forget_connections()
        await eventually(lambda b=before: proxy.connections > b, message="reconnected")
        await eventually(lambda: falco.queued == 0, message=f"round {round_number} drained")
        assert await total_events(exporter.main_http.port) <= falco.delivered
    rounds = await sum_by(exporter.main_http.port, "rule")
    assert all(rounds[f"round {n}"] <= 2000 for n in range(5) if f"round {n}" in rounds)
    # Quiet again: N events published now are counted exactly N times.
    falco.publish(response(rule="after the cuts") for _ in range(10))

    async def counted_exactly() -> bool:
        return (await sum_by(exporter.main_http.port, "rule")).get("after the cuts") == 10

    await eventually(counted_exactly, message="exactly 10 counted after the cuts")
    await eventually(lambda: falco.queued == 0, message="the 10 drained")
    assert (await sum_by(exporter.main_http.port, "rule"))["after the cuts"] == 10


async def test_restart_storm_ends_connected_with_exact_counts(
    falco: SimulatedFalco, certs: CertPaths, exporter_for: ExporterFor
) -> None:
    """Ten Falco restarts in a row: the exporter ends connected and every event counted."""
    exporter = await exporter_for(falco)
    address = falco.address
    for _ in range(10):
        falco.publish(response() for _ in range(20))
        await falco.stop()
        await falco.start(address, tls_of(certs))
    falco.publish(response() for _ in range(20))
    await eventually(lambda: falco.queued == 0, message="queue drained")
    await counted(exporter, 220, message="220 counted")
    assert falco.delivered == 220
    await eventually(lambda: ready_is(exporter, 200), message="connected at the end")


async def test_slow_network_still_counts_everything(
    falco: SimulatedFalco, proxy: FaultProxy, certs: CertPaths, make_exporter: MakeExporter
) -> None:
    """A slow link (20 ms a chunk) delays events but loses none."""
    exporter = await exporter_via(proxy, certs, make_exporter)
    await eventually(lambda: ready_is(exporter, 200), message="ready")
    proxy.slow(0.02)
    falco.publish(response() for _ in range(500))
    await counted(exporter, 500, timeout=30, message="500 over a slow link")
    proxy.restore()
