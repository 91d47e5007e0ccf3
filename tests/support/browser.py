"""Headless Chromium driven over the DevTools protocol (`--remote-debugging-pipe`), stdlib only.

Command-line switches are not enough on Chromium 156: `--blink-settings=javascriptEnabled=false`
is ignored there, so a page "without scripts" ran them anyway. Over the protocol the same
browser is told what to do and asked what it did: scripts off with
`Emulation.setScriptExecutionDisabled` before the page loads, the colour scheme and the window
with the `Emulation` domain, and the DOM read back with `Runtime.evaluate` (the protocol's own
evaluation works when the page's scripts are disabled).

The browser reads NUL-terminated JSON messages on its fd 3 and writes them on its fd 4. It is
started with `os.posix_spawn`, whose file actions put the pipe ends on exactly those numbers
in the child (no `preexec_fn`, which is unsafe once threads run, and no need for the parent's
own fds 3 and 4 to be free), in a session of its own, so that closing it can also kill what
it started. Every wait is bounded by `timeout`; the browser is closed, its processes killed
and reaped, and its profile removed on every way out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import itertools
import json
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# How long a browser asked to close (Browser.close) gets before it is killed.
CLOSE_GRACE = 5.0
# How long killed processes get to be reaped.
REAP_WAIT = 5.0
POLL_INTERVAL = 0.1
# What --dump-dom prints: the doctype, if any, then the document element.
DOM = (
    '(document.doctype ? "<!DOCTYPE " + document.doctype.name + ">\\n" : "")'
    " + document.documentElement.outerHTML"
)

# The pid of the browser the latest `load` started (the tests check that it is gone).
last_pid: int | None = None


@dataclass(frozen=True)
class Page:
    """What `load` saw."""

    dom: str  # document.documentElement.outerHTML after loading (and after the wait)
    screenshot: bytes  # PNG bytes if requested, else b""


def find_chromium() -> str:
    """The browser's path; RuntimeError without one (callers turn that into a skip)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError(f"chromium is not installed (neither {CHROMIUM} nor on PATH)")
    return found


async def load(
    url: str,
    *,
    scripts: bool = True,
    settle_ms: int = 6000,
    window: tuple[int, int] = (1366, 900),
    dark: bool = False,
    screenshot: bool = False,
    timeout: float = 60.0,
    until: str | None = None,
) -> Page:
    """Load `url` in a fresh headless Chromium and return its DOM (and a PNG screenshot).

    scripts: False disables the page's scripts before it loads.
    settle_ms: with scripts, how long (real time) the page's own timers run after the load
        event before the DOM is read; not used when `until` is given.
    until: a JavaScript expression, polled every 100 ms after the load event; the DOM is read
        as soon as it is truthy (an exception counts as not yet).
    window: the viewport in CSS pixels (device scale factor 1), and so the screenshot's size.
    dark: prefers-color-scheme is dark (else light).
    timeout: the bound on the whole run, launch included (closing the browser can add up to
        REAP_WAIT when it has to be killed). TimeoutError names the step it was waiting for.

    RuntimeError if chromium is missing, fails, or the protocol answers with an error (the
    message names the method).
    """
    global last_pid  # noqa: PLW0603 - the one hook the tests read
    executable = find_chromium()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    workdir = Path(tempfile.mkdtemp(prefix="chromium-devtools-"))
    browser: _Browser | None = None
    scope = asyncio.timeout_at(deadline)
    try:
        async with scope:
            browser = await _Browser.launch(executable, workdir)
            last_pid = browser.pid
            return await _drive(
                browser.pipe,
                url,
                scripts=scripts,
                settle_ms=settle_ms,
                window=window,
                dark=dark,
                screenshot=screenshot,
                until=until,
            )
    except TimeoutError as error:
        if not scope.expired():
            raise
        step = browser.pipe.step if browser is not None else "the launch"
        raise TimeoutError(
            f"chromium: {url} not done within {timeout} s (waiting for {step})"
        ) from error
    finally:
        try:
            if browser is not None:
                await browser.close(grace=max(0.0, min(CLOSE_GRACE, deadline - loop.time())))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


async def _drive(
    pipe: _Pipe,
    url: str,
    *,
    scripts: bool,
    settle_ms: int,
    window: tuple[int, int],
    dark: bool,
    screenshot: bool,
    until: str | None,
) -> Page:
    target = await pipe.call("Target.createTarget", {"url": "about:blank"})
    attached = await pipe.call(
        "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
    )
    session: str = attached["sessionId"]
    width, height = window
    await pipe.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        session,
    )
    scheme = "dark" if dark else "light"
    await pipe.call(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        session,
    )
    if not scripts:
        await pipe.call("Emulation.setScriptExecutionDisabled", {"value": True}, session)
    await pipe.call("Page.enable", session=session)
    # The load event counted is the first one after the navigation's answer (its commit).
    navigated, loaded = await pipe.call_then_expect(
        "Page.navigate", {"url": url}, session, "Page.loadEventFired"
    )
    if navigated.get("errorText"):
        raise RuntimeError(f"Page.navigate: {url}: {navigated['errorText']}")
    await pipe.wait(loaded, "Page.loadEventFired")
    if until is not None:
        await _poll(pipe, session, until)
    elif scripts and settle_ms > 0:
        pipe.step = f"the page's scripts to run {settle_ms} ms"
        await asyncio.sleep(settle_ms / 1000)
    dom = await _evaluate(pipe, session, DOM)
    if not isinstance(dom, str):
        raise RuntimeError(f"Runtime.evaluate: the DOM came back as {dom!r}")
    shot = b""
    if screenshot:
        captured = await pipe.call("Page.captureScreenshot", {"format": "png"}, session)
        shot = base64.b64decode(captured["data"])
    return Page(dom=dom, screenshot=shot)


async def _evaluate(pipe: _Pipe, session: str, expression: str) -> Any:
    """The value of `expression` in the page; RuntimeError if it throws."""
    reply = await pipe.call(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
    )
    if "exceptionDetails" in reply:
        raise RuntimeError(f"Runtime.evaluate: {expression!r}: {_exception(reply)}")
    return reply["result"].get("value")


async def _poll(pipe: _Pipe, session: str, until: str) -> None:
    """Until `until` is truthy in the page (the caller's deadline bounds this)."""
    expression = f"Boolean({until})"
    while True:
        reply = await pipe.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
        )
        if "exceptionDetails" in reply:
            pipe.step = f"{until!r} (last: {_exception(reply)})"
        elif reply["result"].get("value") is True:
            return
        else:
            pipe.step = f"{until!r} to be true"
        await asyncio.sleep(POLL_INTERVAL)


def _exception(reply: dict[str, Any]) -> str:
    details = reply["exceptionDetails"]
    thrown = details.get("exception", {})
    return str(thrown.get("description") or details.get("text") or details)


def _high(fd: int) -> int:
    """`fd` moved to a number of at least 10, close-on-exec (the original is closed)."""
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    finally:
        os.close(fd)


class _Browser:
    """A running chromium: its pid (also its process group's) and its DevTools pipe."""

    def __init__(self, pid: int, pipe: _Pipe) -> None:
        self.pid = pid
        self.pipe = pipe
        self._reaped = False

    @classmethod
    async def launch(cls, executable: str, workdir: Path) -> _Browser:
        profile = workdir / "profile"
        profile.mkdir()
        log = workdir / "chromium.log"
        argv = [
            executable,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
        ]
        to_browser, commands = os.pipe()  # the browser reads commands from its fd 3
        replies, from_browser = os.pipe()  # and writes replies and events to its fd 4
        # The child's ends, and its stdin and output, are moved above 4 first, so that no
        # dup2 below overwrites a descriptor a later one still needs.
        child = [
            _high(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)),
            _high(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)),
            _high(to_browser),
            _high(from_browser),
        ]
        stdin, output, fd3, fd4 = child
        try:
            # posix_spawn returns once the child exists (vfork), it does not wait for it.
            pid = os.posix_spawn(  # noqa: ASYNC221
                executable,
                argv,
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin, 0),
                    (os.POSIX_SPAWN_DUP2, output, 1),
                    (os.POSIX_SPAWN_DUP2, output, 2),
                    (os.POSIX_SPAWN_DUP2, fd3, 3),
                    (os.POSIX_SPAWN_DUP2, fd4, 4),
                ],
                setsid=True,
                # As subprocess does: Python ignores these, an exec'd program expects defaults.
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError as error:
            os.close(commands)
            os.close(replies)
            raise RuntimeError(f"chromium ({executable}) did not start: {error}") from error
        finally:
            for fd in child:
                os.close(fd)
        try:
            pipe = await _Pipe.connect(commands, replies, log)
        except BaseException:
            _kill_and_reap(pid)
            raise
        return cls(pid, pipe)

    async def close(self, grace: float) -> None:
        """Browser.close, `grace` seconds to exit, then the process group killed and reaped."""
        try:
            if grace > 0 and self.pipe.open:
                self.pipe.notify("Browser.close")
                await self._exit(grace)
        finally:
            try:
                # Also when the browser exited by itself: it is not reaped yet, so its pid
                # (the group's id) cannot have been reused, and this kills what it left.
                self._kill()
                await self._exit(REAP_WAIT)
            finally:
                self._reap()
                await self.pipe.close()

    def _exited(self) -> bool:
        """Whether the browser has exited (it is not reaped here)."""
        if self._reaped:
            return True
        try:
            state = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped by someone else
            self._reaped = True
            return True
        return state is not None

    async def _exit(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        # Polled: nothing signals a child's exit to this loop without a child watcher.
        while not self._exited() and loop.time() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def _kill(self) -> None:
        if self._reaped:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def _reap(self) -> None:
        if self._reaped:
            return
        if self._exited():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        else:  # only when interrupted, or SIGKILL did not work in time
            _kill_and_reap(self.pid)
        self._reaped = True


def _kill_and_reap(pid: int) -> None:
    """Kill an unreaped child's process group and wait for the child (SIGKILL: briefly)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


_Waiter = tuple[str, str | None, asyncio.Future[dict[str, Any]]]


class _Pipe:
    """The DevTools connection: commands by id, events by method and session."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        incoming: asyncio.ReadTransport,
        outgoing: asyncio.WriteTransport,
        log: Path,
    ) -> None:
        self._reader = reader
        self._incoming = incoming
        self._outgoing = outgoing
        self._log = log
        self._ids = itertools.count(1)
        self._calls: dict[int, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._waiters: list[_Waiter] = []
        # Waiters armed when the command with that id is answered.
        self._after: dict[int, _Waiter] = {}
        # Futures that may end with nobody awaiting them; settled at close.
        self._loose: list[asyncio.Future[dict[str, Any]]] = []
        self._gone: str | None = None
        self.step = "the browser to start"
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, commands: int, replies: int, log: Path) -> _Pipe:
        loop = asyncio.get_running_loop()
        # A screenshot comes as one message of some megabytes.
        reader = asyncio.StreamReader(limit=1 << 28)
        outgoing_file = os.fdopen(commands, "wb", buffering=0)
        incoming_file = os.fdopen(replies, "rb", buffering=0)
        try:
            incoming, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), incoming_file
            )
        except BaseException:
            incoming_file.close()
            outgoing_file.close()
            raise
        try:
            outgoing, _ = await loop.connect_write_pipe(asyncio.Protocol, outgoing_file)
        except BaseException:
            incoming.close()
            outgoing_file.close()
            raise
        return cls(reader, incoming, outgoing, log)

    @property
    def open(self) -> bool:
        return self._gone is None

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        *,
        then: _Waiter | None = None,
    ) -> dict[str, Any]:
        """Send a command and return its result; RuntimeError naming `method` on an error."""
        if self._gone is not None:
            raise self._error(method)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        ident = self._send(method, params, session)
        self._calls[ident] = (method, future)
        if then is not None:
            self._after[ident] = then
        self.step = method
        try:
            return await future
        finally:
            self._calls.pop(ident, None)
            self._after.pop(ident, None)

    def notify(self, method: str) -> None:
        """Send a command whose answer does not matter."""
        if self._gone is None:
            self._send(method, None, None)

    async def call_then_expect(
        self, method: str, params: dict[str, Any], session: str, event: str
    ) -> tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]:
        """`call`, and a future of the first `event` on `session` after its answer."""
        if self._gone is not None:
            raise self._error(method)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._loose.append(future)
        waiter = (event, session, future)
        result = await self.call(method, params, session, then=waiter)
        return result, future

    async def wait(self, future: asyncio.Future[dict[str, Any]], step: str) -> dict[str, Any]:
        self.step = step
        return await future

    async def close(self) -> None:
        self._gone = self._gone or "closed"
        self._incoming.close()
        if not self._outgoing.is_closing():
            self._outgoing.abort()
        self._task.cancel()
        for _, future in self._calls.values():
            future.cancel()
        for future in self._loose:
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved: nobody may await it now
        self._calls.clear()
        self._waiters.clear()
        self._after.clear()
        self._loose.clear()
        # The transports close their pipes, and the reader task ends, on the loop's next turns.
        await asyncio.wait([self._task], timeout=1.0)
        await asyncio.sleep(0)

    def _send(self, method: str, params: dict[str, Any] | None, session: str | None) -> int:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._outgoing.write(json.dumps(message).encode() + b"\0")
        return ident

    async def _read(self) -> None:
        try:
            while True:
                raw = await self._reader.readuntil(b"\0")
                self._dispatch(json.loads(raw[:-1]))
        except asyncio.IncompleteReadError:
            self._fail("chromium closed the DevTools pipe")
        except (asyncio.LimitOverrunError, ValueError) as error:
            self._fail(f"unreadable DevTools message: {error}")

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            entry = self._calls.pop(message["id"], None)
            if entry is None:
                return
            method, future = entry
            then = self._after.pop(message["id"], None)
            if then is not None and "error" not in message:
                self._waiters.append(then)
            if future.done():
                return
            if "error" in message:
                error = message["error"]
                detail = f"{error.get('message')} (code {error.get('code')})"
                if error.get("data"):
                    detail += f": {error['data']}"
                future.set_exception(RuntimeError(f"{method}: {detail}"))
            else:
                future.set_result(message.get("result", {}))
        elif "method" in message:
            for waiter in list(self._waiters):
                method, session, future = waiter
                if method == message["method"] and session == message.get("sessionId"):
                    self._waiters.remove(waiter)
                    if not future.done():
                        future.set_result(message.get("params", {}))
                    break

    def _fail(self, reason: str) -> None:
        self._gone = reason
        for method, future in self._calls.values():
            if not future.done():
                future.set_exception(self._error(method))
        for method, _, future in [*self._waiters, *self._after.values()]:
            if not future.done():
                future.set_exception(self._error(method))
        self._waiters.clear()
        self._after.clear()

    def _error(self, method: str) -> RuntimeError:
        try:
            tail = self._log.read_text(errors="replace")[-2000:].strip()
        except OSError:
            tail = ""
        return RuntimeError(f"{method}: {self._gone}" + (f"; its output:\n{tail}" if tail else ""))
