"""The live page at /, as a person sees it: in a real browser (Debian's chromium, headless).

The demo replays the sample events once; the page is loaded, its script updates it from
/api/live, and what is on screen is checked against /metrics. Screenshots at a narrow and a
wide window (light and dark) are saved in test-artifacts/ (TEST_ARTIFACTS to move them).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import AsyncIterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from exporter.core.counter import EventCounter
from exporter.core.event import FalcoEvent
from exporter.serve import live_page
from exporter.serve.live import MINUTES, LiveView
from exporter.simulator.events import bundled_events_path, load_documents
from tests.support import (
    EVENT,
    REPO,
    FakeClock,
    LogLines,
    MakeExporter,
    browser,
    eventually,
    fetch,
    input_url,
    parse_metrics,
    post,
    scrape,
)
from tests.support.png import first_row, png_header
from tests.support.processes import LOCAL_PORTS, Process, running

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts"))
POD = "nginx-7854ff8877-x2x9q"
RULE = "DetectCurlCommandExecution"


UPDATED = "document.getElementById('live').hasAttribute('data-updated')"


@pytest.fixture
async def demo() -> AsyncIterator[tuple[Process, int]]:
    """`falco-exporter demo --once`: the sample events replayed once, then served."""
    async with running("demo", "--once", "--rate", "50", *LOCAL_PORTS) as process:
        serving = await process.wait_for_log("serving HTTP")
        port = int(serving["metrics_port"])

        async def replayed() -> bool:
            series = await scrape(port)
            return any(
                dict(key).get("rule") == RULE and dict(key).get("k8s_pod_name") == POD
                for key in series
            )

        await eventually(replayed, message="the walkthrough replayed")
        yield process, port


def cells(dom: str, rule: str, pod: str) -> list[str] | None:
    """The cells of the table row for rule and pod, as text."""
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", dom, re.S):
        texts = [
            unescape(re.sub(r"<[^>]+>", "", cell)).replace("new", "").strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        if len(texts) == 6 and texts[0] == rule and texts[3] == pod:
            return texts
    return None


@pytest.mark.usefixtures("chromium")
async def test_the_page_shows_the_walkthrough_as_metrics_count_it(
    demo: tuple[Process, int],
) -> None:
    """After its first update: the chart drawn, the curl row for the nginx pod, same count."""
    _, port = demo
    url = f"http://127.0.0.1:{port}/"
    dom = (await browser.load(url, until=UPDATED)).dom
    assert re.search(r'<main id="live"[^>]*data-updated="[0-9.]+"', dom), "no update ran"
    chart = re.search(r'<svg id="chart"[^>]*data-total="(\d+)" data-bars="(\d+)"', dom)
    assert chart is not None
    assert int(chart.group(2)) > 0
    assert dom.count("<rect") == int(chart.group(2))
    series = await scrape(port)
    assert int(chart.group(1)) == sum(series.values())
    row = cells(dom, RULE, POD)
    assert row is not None, "no DetectCurlCommandExecution row for the nginx pod"
    expected = sum(
        value
        for key, value in series.items()
        if dict(key)["rule"] == RULE and dict(key)["k8s_pod_name"] == POD
    )
    assert (row[1], row[2], int(row[4])) == ("Warning", "default", int(expected))
    assert 'class="new"' in dom  # every rule is new to a fresh exporter
    # Keyboard: every control is a link with a target, and focus is drawn visibly.
    assert all('href="' in link for link in re.findall(r"<a [^>]*>", dom))
    assert "a:focus" in dom


@pytest.mark.usefixtures("chromium")
async def test_the_page_works_without_javascript(demo: tuple[Process, int]) -> None:
    """Scripts off: the server-rendered chart and table say the same, and it reloads itself."""
    _, port = demo
    dom = (await browser.load(f"http://127.0.0.1:{port}/", scripts=False)).dom
    assert not re.search(r'<main id="live"[^>]*data-updated=', dom)  # no script ran
    assert cells(dom, RULE, POD) is not None
    assert '<meta http-equiv="refresh" content="30">' in dom
    assert re.search(r'<svg id="chart"[^>]*data-bars="[1-9]', dom)


@pytest.mark.usefixtures("chromium")
@pytest.mark.parametrize(
    ("name", "size", "dark"),
    [("narrow", (390, 844), False), ("wide", (1366, 900), False), ("wide-dark", (1366, 900), True)],
)
async def test_screenshots_at_narrow_and_wide_sizes_light_and_dark(
    demo: tuple[Process, int], name: str, size: tuple[int, int], dark: bool
) -> None:
    """A screenshot per size and scheme, saved; the background follows the colour scheme."""
    _, port = demo
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"live-page-{name}.png"
    shot.unlink(missing_ok=True)
    page = await browser.load(
        f"http://127.0.0.1:{port}/", window=size, dark=dark, screenshot=True, until=UPDATED
    )
    shot.write_bytes(page.screenshot)
    saved = shot.read_bytes()
    width, height, _, _ = png_header(saved)
    corner = first_row(saved)[0]
    assert (width, height) == size
    assert (sum(corner) < 120) if dark else (sum(corner) > 600), corner


async def test_recent_alerts_are_opt_in_and_never_on_metrics(
    make_exporter: MakeExporter, logs: LogLines
) -> None:
    """Off by default; with --recent-alerts 2 the last two with output lines, never on /metrics."""
    plain = await make_exporter(http_input_address="127.0.0.1:0")
    secret = "curl -H 'Authorization: Bearer s3cr3t' https://example"
    body = json.dumps({**EVENT, "output": secret})
    assert (await post(input_url(plain), body))[0] == 200
    _, text, _ = await fetch(f"http://127.0.0.1:{plain.main_http.port}/api/live")
    data = json.loads(text)
    assert "recent" not in data
    [http_input] = data["inputs"]  # the HTTP-only mode's page: its one input, and its state
    assert http_input["name"] == "HTTP input"
    assert http_input["state"].startswith("listening on port")
    assert "s3cr3t" not in (await fetch(f"http://127.0.0.1:{plain.main_http.port}/"))[1]

    keeping = await make_exporter(
        http_input_address="127.0.0.1:0", listen_address="0.0.0.0:0", recent_alerts="2"
    )
    for rule in ("first", "second", "third"):
        assert (
            await post(input_url(keeping), json.dumps({**EVENT, "rule": rule, "output": secret}))
        )[0] == 200
    _, text, _ = await fetch(f"http://127.0.0.1:{keeping.main_http.port}/api/live")
    recent: list[dict[str, Any]] = json.loads(text)["recent"]
    assert [(alert["rule"], alert["output"]) for alert in recent] == [
        ("third", secret),
        ("second", secret),
    ]
    assert "s3cr3t" in (await fetch(f"http://127.0.0.1:{keeping.main_http.port}/"))[1]
    assert "s3cr3t" not in (await fetch(f"http://127.0.0.1:{keeping.main_http.port}/metrics"))[1]
    [warning] = [r for r in logs.records() if "--recent-alerts" in r.get("event", "")]
    assert warning["level"] == "warning"


async def test_the_history_has_a_fixed_ceiling() -> None:
    """Seventy minutes of alerts: 60 buckets kept, each minute's count by priority exact."""
    clock = FakeClock()
    clock.now = 1_800_000_000.0
    counter = EventCounter()
    view = LiveView(counter, clock=clock)
    add = counter.shard().add
    for minute in range(70):
        for _ in range(minute % 5 + 1):
            add(FalcoEvent("r", 4, "syscall", "h", (), {}))
        view.sample()
        clock.now += 60
    state = await view.state()
    assert len(state.minutes) == MINUTES
    warnings = [counts[4] for _, counts in state.minutes]
    assert warnings[:-1] == [minute % 5 + 1 for minute in range(11, 70)]
    assert warnings[-1] == 0  # the current minute: nothing since the last sample


async def test_the_table_shows_the_top_rows_of_many_and_says_so() -> None:
    """5,000 series: the 200 most recent rows, the total, and the rows ordered by recency."""
    clock = FakeClock()
    counter = EventCounter()
    view = LiveView(counter, clock=clock)
    add = counter.shard().add
    for number in range(5000):
        add(FalcoEvent(f"rule {number}", 4, "syscall", "h", (), {}))
        if number % 1000 == 999:
            await view.sample_in_steps()
            clock.now += 10
    state = await view.state()
    assert (len(state.rows), state.series) == (200, 5000)
    assert {row.rule for row in state.rows} == {f"rule {n}" for n in range(4800, 5000)}
    assert "the 200 most recent of 5000" in live_page.table(state)


async def test_junk_rules_of_low_priority_cannot_push_out_a_new_warning() -> None:
    """3,000 new Debug rules, then a Warning rule, then 3,000 more: the Warning rule is
    still among the rules seen for the first time, first."""
    counter = EventCounter()
    view = LiveView(counter)
    add = counter.shard().add
    for number in range(3000):
        add(FalcoEvent(f"junk {number}", 7, "syscall", "h", (), {}))
    view.sample()
    add(FalcoEvent("Curl", 4, "syscall", "h", (), {}))
    view.sample()
    for number in range(3000, 6000):
        add(FalcoEvent(f"junk {number}", 7, "syscall", "h", (), {}))
    view.sample()
    state = await view.state()
    assert state.new_rules[0][0] == "Curl"
    assert len(state.new_rules) == 2000


def delivery_rows(dom: str) -> dict[str, list[str]]:
    """The Delivery table's rows by Falco, as text."""
    table = re.search(r'<table id="falcos">(.*?)</table>', dom, re.S)
    assert table is not None, "no Delivery table"
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S):
        texts = [
            unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        if len(texts) == 7:
            rows[texts[0]] = texts
    return rows


@pytest.mark.usefixtures("chromium")
async def test_the_page_shows_each_falcos_delivery_as_metrics_count_it() -> None:
    """`demo --http` with a simulated Falco that drops a share of its posts: the Delivery
    table shows, per Falco, what it raised, what arrived and what was lost, as /metrics
    counts them, and a banner says alerts were lost."""
    async with running(
        "demo", "--http", "--once", "--rate", "50", "--snapshot-interval", "0.5",
        "--drop-share", "0.3", "--seed", "1", "--http-input-address", "127.0.0.1:0",
        *LOCAL_PORTS,
    ) as process:  # fmt: skip
        serving = await process.wait_for_log("serving HTTP")
        port = int(serving["metrics_port"])

        async def settled() -> dict[str, tuple[float, float, float]] | None:
            _, body, _ = await fetch(f"http://127.0.0.1:{port}/metrics")
            families = parse_metrics(body)
            by_falco = {}
            for key, raised in families["falco_exporter_falco_alerts_raised"].items():
                received = families["falco_exporter_falco_alerts_received"][key]
                lost = families["falco_exporter_alerts_lost"].get(key, -1.0)
                if raised != received + lost:
                    return None
                by_falco[dict(key)["hostname"]] = (raised, received, lost)
            return by_falco if len(by_falco) == 5 else None

        async def is_settled() -> bool:
            return await settled() is not None

        await eventually(is_settled, message="every dropped alert found lost")
        counted = await settled()
        assert counted is not None
        chance = random.Random(1)  # the simulator's draws for --seed 1, one per sample
        dropped = sum(
            1
            for document in load_documents(bundled_events_path())
            if chance.random() < 0.3 and document.get("source") != "internal"
        )
        assert dropped > 0
        assert sum(lost for _, _, lost in counted.values()) == dropped
        dom = (await browser.load(f"http://127.0.0.1:{port}/", until=UPDATED)).dom
    rows = delivery_rows(dom)
    assert set(rows) == set(counted)
    for hostname, (raised, received, lost) in counted.items():
        row = rows[hostname]
        assert (row[1], row[2], row[3], row[4]) == (
            "0.44.1", str(int(raised)), str(int(received)), str(int(lost)),
        )  # fmt: skip
    banner = re.search(r'<p class="banner" role="alert">(.*?)</p>', dom, re.S)
    assert banner is not None
    assert banner.group(1).startswith(f"{dropped} alerts raised by Falco never reached this")


async def test_the_http_inputs_state_is_its_recent_refusals_each_with_its_fix(
    make_exporter: MakeExporter,
) -> None:
    """One text post turns the input red with the json_output fix; five minutes without a
    refusal turn it green again (it stayed red forever), though the count stays; another
    reason shows its own fix, not json_output's."""
    clock = FakeClock()
    exporter = await make_exporter(clock=clock, http_input_address="127.0.0.1:0")
    port = exporter.main_http.port

    async def state() -> dict[str, Any]:
        _, text, _ = await fetch(f"http://127.0.0.1:{port}/api/live")
        [http_input] = json.loads(text)["inputs"]
        return dict(http_input)

    async def state_when(healthy: bool) -> dict[str, Any]:
        """The input's state once the page, rebuilt at most once a second, says so."""
        found: dict[str, Any] = {}

        async def says() -> bool:
            found.update(await state())
            return bool(found["healthy"]) is healthy

        await eventually(says, message=f"the HTTP input healthy={healthy}")
        return found

    text_body = "10:15:00.123456789: Warning curl ran (user=root)"
    assert (await post(input_url(exporter), text_body))[0] == 400
    red = await state_when(healthy=False)
    assert "text_output: Falco posts its text output: set json_output: true" in red["state"]
    clock.now += 301  # five minutes without a refusal
    green = await state_when(healthy=True)
    assert "1 refused" in green["state"]
    assert "json_output" not in green["state"]
    assert (await post(input_url(exporter), json.dumps({"rule": "r"})))[0] == 400
    other = await state_when(healthy=False)
    assert "json_output" not in other["state"]
    assert "not_an_event: the sender is not Falco's http_output" in other["state"]
