"""The DevTools driver of headless Chromium (tests/support/browser.py), against tiny local pages.

A server on 127.0.0.1 serves a page whose script changes a paragraph, a page coloured by
prefers-color-scheme, a URL that never answers and a page whose image never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import browser
from tests.support.png import first_row, png_header

SCRIPTED = b"""<!DOCTYPE html>
<html><head><title>scripted</title></head><body>
<p id="status">static text</p>
<script>
document.documentElement.dataset.ran = "yes";
const text = "set by" + " the script";  // not the text itself, which the DOM would show
setTimeout(() => { document.getElementById("status").textContent = text; }, 200);
</script>
</body></html>
"""
COLOURED = b"""<!DOCTYPE html>
<html><head><style>
html, body { margin: 0; height: 100%; background: #fff; }
@media (prefers-color-scheme: dark) { html, body { background: #000; } }
</style></head><body></body></html>
"""
NEVER_LOADS = b"""<!DOCTYPE html>
<html><body><p>an image that never comes:</p><img src="/hang"></body></html>
"""
PAGES = {"/": SCRIPTED, "/coloured": COLOURED, "/never-loads": NEVER_LOADS}
DONE = "document.getElementById('status').textContent === 'set by the script'"


@dataclass
class Site:
    url: str
    paths: list[str] = field(default_factory=list)  # what was asked for, in order


@pytest.fixture
async def site(chromium: str) -> AsyncIterator[Site]:
    """PAGES over HTTP/1.1; /hang is accepted, read, and never answered."""
    handlers: set[asyncio.Task[None]] = set()
    writers: set[asyncio.StreamWriter] = set()
    served = Site("")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            served.paths.append(path)
            if path == "/hang":
                await reader.read()  # until the browser goes away
                return
            body = PAGES.get(path)
            status = "200 OK" if body is not None else "404 Not Found"
            body = body if body is not None else b"not found"
            kind = "text/html; charset=utf-8" if path in PAGES else "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # a speculative connection closed unused, or the browser killed
        finally:
            writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    served.url = f"http://127.0.0.1:{port}"
    try:
        yield served
    finally:
        server.close()
        for writer in list(writers):
            writer.close()
        await server.wait_closed()
        if handlers:
            await asyncio.wait(handlers, timeout=5)


def status(dom: str) -> str:
    """The paragraph's text."""
    found = re.search(r'<p id="status">(.*?)</p>', dom)
    assert found is not None, dom
    return found.group(1)


def live_in_group(pgid: int) -> list[int]:
    """The processes of a process group that have not exited (zombies have)."""
    live = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state not in {"Z", "X"}:
            live.append(int(entry.name))
    return live


async def assert_gone(pid: int | None) -> None:
    """The browser was reaped, and what it started is dead (a killed process takes a moment)."""
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    deadline = time.monotonic() + 2
    while live_in_group(pid) and time.monotonic() < deadline:  # noqa: ASYNC110 - /proc has no events
        await asyncio.sleep(0.05)
    assert live_in_group(pid) == []


async def test_scripts_run_and_until_returns_once_its_condition_holds(site: Site) -> None:
    start = time.monotonic()
    page = await browser.load(site.url + "/", until=DONE, settle_ms=60_000)
    elapsed = time.monotonic() - start
    assert status(page.dom) == "set by the script"
    assert '<html data-ran="yes">' in page.dom
    assert page.dom.startswith("<!DOCTYPE html>\n<html")
    assert page.screenshot == b""
    assert elapsed < 30, "until, not settle_ms, ended the wait"
    await assert_gone(browser.last_pid)


async def test_scripts_run_for_settle_ms_without_until(site: Site) -> None:
    page = await browser.load(site.url + "/", settle_ms=1500)
    assert status(page.dom) == "set by the script"
    await assert_gone(browser.last_pid)


async def test_without_scripts_the_page_is_as_served(site: Site) -> None:
    # `until` is evaluated by DevTools, which still works with the page's scripts off.
    page = await browser.load(
        site.url + "/", scripts=False, until="document.readyState === 'complete'"
    )
    assert status(page.dom) == "static text"
    assert "<html>" in page.dom  # no data-ran: the script did not run at all
    assert page.dom.startswith("<!DOCTYPE html>\n<html>")
    await assert_gone(browser.last_pid)


@pytest.mark.parametrize("window", [(1366, 900), (390, 844)])
async def test_the_screenshot_is_a_png_of_the_window(site: Site, window: tuple[int, int]) -> None:
    page = await browser.load(site.url + "/coloured", window=window, screenshot=True, settle_ms=0)
    assert png_header(page.screenshot)[:2] == window
    await assert_gone(browser.last_pid)


@pytest.mark.parametrize("dark", [False, True])
async def test_dark_is_the_colour_scheme_the_page_sees(site: Site, dark: bool) -> None:
    page = await browser.load(
        site.url + "/coloured", dark=dark, screenshot=True, scripts=False, window=(640, 480)
    )
    row = first_row(page.screenshot)
    assert len(row) == 640
    top_left = row[0]
    mean = sum(map(sum, row)) / (3 * len(row))
    if dark:
        assert max(top_left) < 32, top_left
        assert mean < 32, mean
    else:
        assert min(top_left) > 223, top_left
        assert mean > 223, mean
    await assert_gone(browser.last_pid)


@pytest.mark.slow  # waits out its 5 s timeout
@pytest.mark.parametrize(
    ("path", "asked"),
    [("/hang", ["/hang"]), ("/never-loads", ["/never-loads", "/hang"])],
    ids=["no-answer", "no-load-event"],
)
async def test_a_page_that_never_loads_times_out_and_leaves_no_browser(
    site: Site, path: str, asked: list[str]
) -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"not done within 5 s \(waiting for Page\."):
        await browser.load(site.url + path, timeout=5)
    elapsed = time.monotonic() - start
    assert elapsed < 6.5, elapsed
    assert all(want in site.paths for want in asked), site.paths
    await assert_gone(browser.last_pid)


async def test_a_cancelled_load_leaves_no_browser(site: Site) -> None:
    task = asyncio.create_task(browser.load(site.url + "/hang", timeout=60))
    while "/hang" not in site.paths and not task.done():  # noqa: ASYNC110 - the server's log
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_gone(browser.last_pid)


async def test_a_protocol_error_names_the_method(site: Site) -> None:
    with pytest.raises(RuntimeError, match=r"^Page\.navigate: Cannot navigate to invalid URL"):
        await browser.load("not a url", timeout=30)
    await assert_gone(browser.last_pid)


async def test_a_failed_navigation_is_an_error(site: Site) -> None:
    # 127.0.0.1:1 is a port browsers refuse to use.
    with pytest.raises(RuntimeError, match=r"^Page\.navigate: .*net::ERR_UNSAFE_PORT"):
        await browser.load("http://127.0.0.1:1/", timeout=30)
    await assert_gone(browser.last_pid)


def test_without_chromium_the_error_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="chromium is not installed"):
        browser.find_chromium()
