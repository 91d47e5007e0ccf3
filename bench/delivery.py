"""Benchmark: what proof of delivery adds to each alert, and what a snapshot costs.

  python -m bench.delivery [--alerts 500000] [--falcos 10000]

Prints a Markdown table (docs/performance.md, "Proof of delivery"):
1. the delivery ledger's CPU per alert (every counted alert passes through it), alone and
   with a snapshot of the same Falco awaiting settlement;
2. the CPU per metrics snapshot (read, settled, compared);
3. the ledger's memory per Falco tracked, at --falcos Falcos (its bound is 10,000).
The HTTP input's events per CPU-second with and without it are measured by bench.http_input
run against two checkouts (--exporter-path).
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from pathlib import Path

from exporter.core.delivery import DeliveryLedger
from exporter.inputs.falco_json.event import event_from_json
from exporter.simulator.falco_counts import FalcoCounts

SAMPLE = Path(__file__).resolve().parent.parent / "exporter/simulator/data/sample-events.jsonl"
SECOND = 1_000_000_000


def per_alert_ns(alerts: int, *, pending: bool) -> float:
    """CPU ns per alert observed, one Falco (with a snapshot awaiting settlement or not)."""
    clock = [time.time_ns()]
    falco = FalcoCounts("node-1", clock_ns=lambda: clock[0])
    ledger = DeliveryLedger()
    alert = event_from_json(falco.matched(json.loads(SAMPLE.read_text().splitlines()[0])))
    if pending:
        ledger.observe(event_from_json(falco.snapshot()))
    started = time.process_time()
    for _ in range(alerts):
        ledger.observe(alert)
    return (time.process_time() - started) / alerts * 1e9


def per_snapshot_ns(snapshots: int) -> float:
    """CPU ns per snapshot: one Falco, a minute apart, 10 alerts between two."""
    clock = [time.time_ns()]
    falco = FalcoCounts("node-1", clock_ns=lambda: clock[0])
    ledger = DeliveryLedger()
    events = []
    for _ in range(snapshots):
        clock[0] += 60 * SECOND
        events.append(event_from_json(falco.snapshot()))
    spent = 0.0
    for event in events:
        started = time.process_time()
        ledger.observe(event)
        spent += time.process_time() - started
    return spent / snapshots * 1e9


def bytes_per_falco(falcos: int) -> float:
    """Memory the ledger holds per Falco, each with two snapshots and a few alerts seen."""
    clock = [time.time_ns()]
    ledger = DeliveryLedger(max_falcos=falcos)
    documents = json.loads(SAMPLE.read_text().splitlines()[0])
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for number in range(falcos):
        falco = FalcoCounts(f"node-{number:05d}", clock_ns=lambda: clock[0])
        ledger.observe(event_from_json(falco.snapshot()))
        for _ in range(3):
            ledger.observe(event_from_json(falco.matched(documents)))
        clock[0] += 60 * SECOND
        ledger.observe(event_from_json(falco.snapshot()))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert ledger.tracked == falcos
    return held / falcos


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery")
    parser.add_argument("--alerts", type=int, default=500_000)
    parser.add_argument("--falcos", type=int, default=10_000)
    options = parser.parse_args()
    print("| proof of delivery | cost |")
    print("|---|---|")
    print(f"| CPU per alert | {per_alert_ns(options.alerts, pending=False):,.0f} ns |")
    pending = per_alert_ns(options.alerts, pending=True)
    print(f"| CPU per alert, a snapshot awaiting settlement | {pending:,.0f} ns |")
    print(f"| CPU per snapshot | {per_snapshot_ns(10_000):,.0f} ns |")
    held = bytes_per_falco(options.falcos)
    print(f"| memory per Falco, {options.falcos:,} Falcos | {held:,.0f} B |")


if __name__ == "__main__":
    main()
