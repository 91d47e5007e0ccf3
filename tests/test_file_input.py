"""The file input: Falco's file_output followed, committed at each scrape, freed from disk,
and counted exactly once across restarts, SIGKILL included.

Falco is played by appends of one line each (O_APPEND, one write per alert, as Falco's
file_output writes), of the real Falco 0.44.1 alerts in tests/data.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import errno
import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp

from exporter.app import Exporter
from exporter.inputs.file import spool as spool_module
from tests.support import (
    REPO,
    LogLines,
    MakeExporter,
    eventually,
    fetch,
    free_port,
    labels,
    parse_metrics,
    scrape,
    total_events,
)
from tests.support.processes import LOCAL_PORTS, running
from tests.support.prometheus import Prometheus

CAPTURES = REPO / "tests" / "data" / "falco-0.44.1"


def falco_alerts() -> list[dict[str, Any]]:
    """The alerts of the real Falco 0.44.1 JSON requests, decoded."""
    paths = sorted((CAPTURES / "replay-json").glob("req-*.http"))
    assert paths
    return [json.loads(path.read_bytes().partition(b"\r\n\r\n")[2]) for path in paths]


def alert_line(n: int) -> bytes:
    """The n-th alert: a real one, its rule and pod varied, as one JSON line."""
    alerts = falco_alerts()
    alert = dict(alerts[n % len(alerts)])
    alert["rule"] = f"rule {n % 7}"
    alert["output_fields"] = {**alert["output_fields"], "k8s.pod.name": f"pod-{n % 5}"}
    return json.dumps(alert).encode() + b"\n"


def append(path: Path, data: bytes) -> None:
    """One write with O_APPEND, as Falco's file_output writes an alert."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(descriptor, data)
    finally:
        os.close(descriptor)


async def counted(exporter: Exporter, total: int) -> None:
    """Until sum(falco_events) is `total` on the exporter's /metrics."""

    async def check() -> bool:
        return await total_events(exporter.main_http.port) == total

    await eventually(check, message=f"{total} alerts counted")


async def rejected(exporter: Exporter) -> dict[str, float]:
    """falco_exporter_file_input_rejected_total by reason."""
    samples = await scrape(exporter.main_http.port, "falco_exporter_file_input_rejected")
    return {dict(key)["reason"]: value for key, value in samples.items()}


async def test_lines_are_counted_as_the_http_input_counts_them(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    """The same labels as the HTTP input gives the same alerts; a line still being written
    waits for its newline; bad lines are skipped by reason and the good ones around them
    counted."""
    spool = tmp_path / "events.json"
    exporter = await make_exporter(file_input=str(spool))
    via_http = await make_exporter(http_input_address="127.0.0.1:0")
    lines = [alert_line(n) for n in range(6)]
    for line in lines:
        append(spool, line)
    half = alert_line(6)
    append(spool, half[:40])  # a write in progress
    await counted(exporter, 6)
    async with aiohttp.ClientSession() as session:
        for line in lines:
            url = f"http://127.0.0.1:{via_http.ports['http_input']}/"
            async with session.post(url, data=line.strip()) as answer:
                assert answer.status == 200
    assert await scrape(exporter.main_http.port) == await scrape(via_http.main_http.port)
    append(spool, half[40:] + b"not json\n" + b'{"rule": "x"}\n' + b"\n" + alert_line(7))
    await counted(exporter, 8)
    assert await rejected(exporter) == {
        "not_json": 1,
        "not_an_event": 1,
        "unknown_priority": 0,
        "too_long": 0,
        "torn": 0,
    }


async def test_a_restart_counts_on_from_the_last_scrape_without_counting_twice(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    """A scrape commits what it serves; the next process starts from those very counts and
    counts only the lines after them, so what Prometheus saw never goes down or doubles."""
    spool = tmp_path / "events.json"
    first = await make_exporter(file_input=str(spool))
    for n in range(5):
        append(spool, alert_line(n))
    await counted(first, 5)
    served = await scrape(first.main_http.port)
    for n in range(5, 8):
        append(spool, alert_line(n))
    await counted(first, 8)
    await first.stop()
    second = await make_exporter(file_input=str(spool))
    for n in range(8, 10):
        append(spool, alert_line(n))
    await counted(second, 10)
    now = await scrape(second.main_http.port)
    assert all(now[key] >= value for key, value in served.items())
    expected = collections.Counter((f"rule {n % 7}", f"pod-{n % 5}") for n in range(10))
    got = {(dict(key)["rule"], dict(key)["k8s_pod_name"]): value for key, value in now.items()}
    assert got == expected


async def test_sigkill_and_restarts_lose_nothing_and_count_nothing_twice(tmp_path: Path) -> None:
    """Falco appends all along while the exporter is SIGKILLed and restarted four times, a
    real Prometheus scraping it throughout: Prometheus never sees a counter go down, its
    last values are the lines written, exactly, per rule and pod, and the file's disk use
    stays a few blocks."""
    spool = tmp_path / "events.json"
    port = free_port()
    args = [*("--file-input", str(spool), "--listen-address", f"127.0.0.1:{port}")]
    args += ["--probes-listen-address", "127.0.0.1:0", "--log-format", "json"]
    prometheus = Prometheus(tmp_path / "prometheus", port)
    (tmp_path / "prometheus").mkdir()
    await prometheus.start()
    written = 0
    done = asyncio.Event()

    async def falco() -> None:
        nonlocal written
        for n in range(2400):
            append(spool, alert_line(n))
            written += 1
            if n % 20 == 19:
                await asyncio.sleep(0.1)  # Falco's pace, about 200 alerts a second
        done.set()

    async def scraped_this_process(process_start: float) -> bool:
        result = await prometheus.api("/api/v1/query", query="max(process_start_time_seconds)")
        return bool(result["result"]) and float(result["result"][0]["value"][1]) == process_start

    async def start_time() -> float:
        status, body, _ = await fetch(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        [(_, value)] = parse_metrics(body)["process_start_time_seconds"].items()
        return value

    try:
        writer = asyncio.create_task(falco())
        for round_number in range(5):
            async with running(*args) as process:
                if round_number:
                    await process.wait_for_log("resumed from the checkpoint")
                await process.wait_for_log("serving HTTP")
                started = await start_time()
                await eventually(
                    lambda s=started: scraped_this_process(s),
                    timeout=30,
                    message=f"Prometheus scraped process {round_number}",
                )
                if round_number < 4:
                    await eventually(lambda r=round_number: written > 400 * (r + 1), timeout=30)
                    assert not done.is_set()  # killed while Falco writes
                    process.process.send_signal(signal.SIGKILL)
                    await process.process.wait()
                    continue
                await asyncio.wait_for(done.wait(), 60)
                await writer

                async def all_seen() -> bool:
                    result = await prometheus.api("/api/v1/query", query="sum(falco_events)")
                    values = [float(sample["value"][1]) for sample in result["result"]]
                    return values == [written]

                await eventually(all_seen, timeout=60, message="Prometheus saw every line")
                resets = await prometheus.api(
                    "/api/v1/query", query="sum(resets(falco_events[10m]))"
                )
                assert float(resets["result"][0]["value"][1]) == 0
                last = await prometheus.api(
                    "/api/v1/query", query="sum by (rule, k8s_pod_name) (falco_events)"
                )
                seen = {
                    (s["metric"]["rule"], s["metric"]["k8s_pod_name"]): float(s["value"][1])
                    for s in last["result"]
                }
                truth = collections.Counter(
                    (f"rule {n % 7}", f"pod-{n % 5}") for n in range(written)
                )
                assert seen == truth

                async def freed() -> bool:
                    samples = await scrape(port, "falco_exporter_file_input_bytes")
                    sizes = {dict(key)["kind"]: value for key, value in samples.items()}
                    return sizes["committed"] == sizes["size"] == spool.stat().st_size

                await eventually(freed, message="everything committed")
                allocated = spool.stat().st_blocks * 512
                assert spool.stat().st_size > 1_000_000
                assert allocated <= 64 * 1024, allocated
    finally:
        await prometheus.stop()


async def test_truncation_and_replacement_are_noticed_and_nothing_is_counted_twice(
    make_exporter: MakeExporter, tmp_path: Path, logs: LogLines
) -> None:
    """A truncated file is read again from its start; a replaced one is read to its end,
    its torn last line counted as such, then the new file from its start."""
    spool = tmp_path / "events.json"
    exporter = await make_exporter(file_input=str(spool))
    for n in range(3):
        append(spool, alert_line(n))
    await counted(exporter, 3)
    os.truncate(spool, 0)
    append(spool, alert_line(3) + alert_line(4))
    await counted(exporter, 5)
    assert logs.matching("the file was truncated: reading it again from its start")
    append(spool, alert_line(5) + alert_line(6)[:30])  # then Falco's file goes
    spool.rename(tmp_path / "events.json.old")
    append(spool, alert_line(7))
    await counted(exporter, 7)
    assert logs.matching("the file was replaced: reading the new one from its start")
    assert (await rejected(exporter))["torn"] == 1


async def test_a_corrupt_checkpoint_is_said_and_the_file_is_read_whole(
    make_exporter: MakeExporter, tmp_path: Path, logs: LogLines
) -> None:
    """A checkpoint that is not one: an error naming it, and the file counted from its
    start (nothing of it was committed that can be trusted)."""
    spool = tmp_path / "events.json"
    for n in range(4):
        append(spool, alert_line(n))
    Path(f"{spool}.checkpoint").write_text('{"format": 1, "offset": "x"')
    exporter = await make_exporter(file_input=str(spool))
    await counted(exporter, 4)
    [error] = logs.matching("checkpoint unusable: counting the file from its start, from 0")
    assert f"{spool}.checkpoint" in error["error"]


async def test_read_lines_are_freed_from_disk(make_exporter: MakeExporter, tmp_path: Path) -> None:
    """Megabytes of alerts, committed: the file keeps its size, and its blocks are few."""
    spool = tmp_path / "events.json"
    exporter = await make_exporter(file_input=str(spool))
    total = 0
    for block in range(40):
        append(spool, b"".join(alert_line(block * 50 + n) for n in range(50)))
        total += 50
    await counted(exporter, total)
    await scrape(exporter.main_http.port)  # a scrape commits
    assert spool.stat().st_size > 1_000_000
    assert spool.stat().st_blocks * 512 <= 64 * 1024


async def test_a_filesystem_refusing_holes_is_said_at_start_up(
    make_exporter: MakeExporter, tmp_path: Path, logs: LogLines, monkeypatch: Any
) -> None:
    """Where fallocate refuses to punch (EOPNOTSUPP, as some filesystems answer), reading
    goes on, a warning says the file grows and how to bound it, and the live page says so."""

    def refuse(*_args: object) -> int:
        ctypes.set_errno(errno.EOPNOTSUPP)
        return -1

    monkeypatch.setattr(spool_module, "_FALLOCATE", refuse)
    spool = tmp_path / "events.json"
    exporter = await make_exporter(file_input=str(spool))
    append(spool, b"".join(alert_line(n) for n in range(200)))
    await counted(exporter, 200)
    await scrape(exporter.main_http.port)

    def warned() -> bool:
        return bool(
            logs.matching("read lines are not freed from disk: the file grows with every alert")
        )

    await eventually(warned, message="the warning")
    [status] = [s for s in exporter.statuses() if s.name == "File input"]
    assert not status.healthy
    assert "refuses hole punching" in status.state
    assert labels(kind="allocated") in await scrape(
        exporter.main_http.port, "falco_exporter_file_input_bytes"
    )


async def test_falcos_metrics_snapshots_in_the_file_feed_the_delivery_accounting(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    """Falco writes its metrics snapshots to file_output too: read from the file, they say
    how many alerts Falco raised, as over HTTP (docs/delivery.md)."""
    spool = tmp_path / "events.json"
    exporter = await make_exporter(file_input=str(spool))
    paths = sorted((CAPTURES / "nodriver-json").glob("req-*.http"))
    for path in paths:
        append(spool, path.read_bytes().partition(b"\r\n\r\n")[2] + b"\n")

    async def raised() -> bool:
        samples = await scrape(
            exporter.main_http.port, "falco_exporter_falco_last_snapshot_timestamp_seconds"
        )
        return labels(hostname="vm") in samples

    await eventually(raised, message="Falco's snapshot read from the file")


async def test_a_file_input_in_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    """No folder for the file (the shared volume not mounted): the process exits 2 and its
    log names the flag and the folder; a folder in place of the file likewise."""
    for path, says in (
        (tmp_path / "not-mounted" / "events.json", str(tmp_path / "not-mounted")),
        (tmp_path, "is a folder"),
    ):
        async with running(
            "--file-input", str(path), *LOCAL_PORTS, "--log-format", "json"
        ) as process:
            record = await process.wait_for_log("cannot read --file-input")
            assert record["flag"] == "--file-input"
            assert says in record["error"]
            assert await process.process.wait() == 2


async def test_a_flood_of_scrapes_with_nothing_new_writes_no_checkpoint(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    """Each scrape commits before it answers, but only what is new: 200 scrapes, 20 at a
    time, of an unchanged exporter write the checkpoint once at most, and the probes answer
    meanwhile; one new alert is written at the next scrape."""
    spool = tmp_path / "events.json"
    exporter = await make_exporter(file_input=str(spool))
    append(spool, alert_line(0))
    await counted(exporter, 1)

    async def written() -> float:
        samples = await scrape(exporter.main_http.port, "falco_exporter_file_input_checkpoints")
        return samples[labels(result="written")]

    before = await written()
    url = f"http://127.0.0.1:{exporter.main_http.port}/metrics"
    for _ in range(10):
        answers = await asyncio.gather(*(fetch(url) for _ in range(20)))
        assert [status for status, _, _ in answers] == [200] * 20
        status, _, _ = await fetch(f"http://127.0.0.1:{exporter.ports['probes']}/liveness")
        assert status == 200
    assert await written() <= before + 1
    mtime = Path(f"{spool}.checkpoint").stat().st_mtime_ns
    assert await written() <= before + 1
    assert Path(f"{spool}.checkpoint").stat().st_mtime_ns == mtime
    append(spool, alert_line(1))
    await counted(exporter, 2)  # that scrape commits the new alert
    assert await written() >= before + 1
