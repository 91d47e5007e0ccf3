"""Which event loop runs the exporter: uvloop when installed, else asyncio's own.

uvloop (libuv) makes each HTTP request cheaper (docs/performance.md), but it is a native
wheel that not every platform has, so it is optional: `pip install 'falco-exporter[fast]'`
(the container image has it). The choice is logged at start-up, so a slower fallback is
never silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from exporter.settings.choices import EventLoopChoice

_T = TypeVar("_T")


class EventLoopError(Exception):
    """`--event-loop uvloop` without uvloop installed."""


def loop_factory(
    choice: EventLoopChoice,
) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """(factory for asyncio.Runner, the loop's name as logged) for `auto|uvloop|asyncio`."""
    if choice == EventLoopChoice.ASYNCIO:
        return None, "asyncio"
    try:
        import uvloop  # noqa: PLC0415 - optional, and only loaded when chosen
    except ImportError:
        if choice == EventLoopChoice.UVLOOP:
            raise EventLoopError(
                "--event-loop uvloop: uvloop is not installed "
                "(pip install 'falco-exporter[fast]', or --event-loop auto)"
            ) from None
        return None, "asyncio (uvloop not installed)"
    return uvloop.new_event_loop, f"uvloop {getattr(uvloop, '__version__', '')}".strip()


def run_with_loop(
    main: Coroutine[Any, Any, _T], factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> _T:
    """asyncio.run on the chosen loop."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
