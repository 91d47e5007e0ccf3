"""DNS discovery of Falco pods: every address behind a headless Service is a target.

The name is resolved with the system resolver (getaddrinfo: /etc/hosts, then DNS,
as everything else on the host resolves), every interval. New addresses become
subscriptions, vanished ones are stopped. A failed lookup keeps the targets found
last time: a DNS hiccup must never stop the counting.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from exporter.inputs.grpc.targets import Target, TcpTargetFactory
from exporter.runtime.threads import on_loop
from exporter.settings.addresses import join_host_port, split_host_port
from exporter.settings.durations import format_duration

_LOOKUP_TIMEOUT = 10.0


@dataclass(eq=False)
class DiscoveryState:
    """What discovery reports to the self-metrics."""

    name: str
    lookups_ok: int = 0
    lookups_failed: int = 0
    last_success_time: float = 0.0
    addresses: int = 0


class DnsDiscovery:
    """Resolves NAME:PORT every interval and hands the targets to `apply`."""

    def __init__(
        self,
        name: str,
        interval: float,
        make_target: TcpTargetFactory,
        apply: Callable[[list[Target]], Awaitable[None]],
        static: list[Target],
    ) -> None:
        """`name` is NAME:PORT; addresses that a `static` target resolves to are left to it."""
        self._host, self._port = split_host_port(name, default_port=None)
        self._interval = interval
        self._make_target = make_target
        self._apply = apply
        self._static = [target for target in static if target.tls is not None]
        self._covered: set[str] = set()
        self.state = DiscoveryState(name=name)
        self._log = structlog.get_logger("discovery").bind(dns=name)
        self._known: set[str] | None = None
        self._last_addresses: set[str] | None = None

    async def run(self) -> None:
        """Look up, apply, sleep; forever."""
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval)

    async def refresh(self) -> None:
        """One lookup; on failure keep the current targets and say so."""
        try:
            addresses = await asyncio.wait_for(resolve(self._host, self._port), _LOOKUP_TIMEOUT)
        except (OSError, TimeoutError, UnicodeError) as error:
            self.state.lookups_failed += 1
            self._log.warning(
                "DNS lookup failed; keeping the current targets",
                error=str(error) or type(error).__name__,
                next_lookup_in=format_duration(self._interval),
            )
            return
        self.state.lookups_ok += 1
        self.state.last_success_time = time.time()
        self.state.addresses = len(addresses)
        if addresses != self._last_addresses:
            # Only a change of the answer can meet a static target anew: resolve them then.
            self._covered = await static_addresses(self._static)
            self._last_addresses = addresses
        targets = [
            self._make_target(address, self._port, self._host) for address in sorted(addresses)
        ]
        targets = [target for target in targets if target.name not in self._covered]
        if {t.name for t in targets} != self._known:
            self._log.info(
                "DNS lookup changed the targets", targets=[target.name for target in targets]
            )
            self._known = {t.name for t in targets}
        await self._apply(targets)


async def resolve(host: str, port: int) -> set[str]:
    """Every IPv4 and IPv6 address the system resolver gives for host.

    The lookup runs on a daemon thread of its own, not the event loop's executor: a lookup
    that hangs is abandoned at its timeout, and never holds the process at exit (the
    executor's threads are waited for, however long they take).
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[set[str]] = loop.create_future()

    def settle(result: set[str] | BaseException) -> None:
        if answer.done():
            return  # abandoned at its timeout
        if isinstance(result, BaseException):
            answer.set_exception(result)
        else:
            answer.set_result(result)

    def lookup() -> None:
        result: set[str] | BaseException
        try:
            infos = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
            result = {str(info[4][0]) for info in infos}
        except (OSError, UnicodeError) as error:
            result = error
        on_loop(loop, lambda: settle(result))()

    threading.Thread(target=lookup, name=f"dns {host}", daemon=True).start()
    return await answer


async def static_addresses(targets: list[Target]) -> set[str]:
    """The host:port names static TCP targets resolve to, so discovery skips them."""
    covered: set[str] = set()
    for target in targets:
        if target.tls is None:
            continue
        host, port = split_host_port(target.name, default_port=None)
        try:
            addresses = await asyncio.wait_for(resolve(host, port), _LOOKUP_TIMEOUT)
        except (OSError, TimeoutError, UnicodeError):
            continue
        covered.update(join_host_port(address, port) for address in addresses)
    return covered
