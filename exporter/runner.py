"""Run an Exporter in the foreground of a process: the one driver the commands share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from exporter import __version__
from exporter.app import Exporter
from exporter.http.limits import ListenError
from exporter.inputs.falco_json import parser as json_parser
from exporter.inputs.file.spool import FileInputError
from exporter.runtime.certificates import WARN_BEFORE_EXPIRY, HeldCertificates
from exporter.runtime.signals import stop_on_signals
from exporter.runtime.tasks import cancel_and_wait
from exporter.settings.advice import advice
from exporter.settings.config import Config
from exporter.settings.tls import CertificateFilesError, utc_time
from exporter.settings.web_config import WebConfigError

# What runs beside the exporter until the stop (the demo's feeder, for one).
Companion = Callable[[Exporter], Coroutine[Any, Any, object]]


# The flag that sets each listener's address, for the error that names it.
LISTEN_FLAGS = {
    "metrics": "--listen-address",
    "probes": "--probes-listen-address",
    "http_input": "--http-input-address",
}


async def serve(config: Config, stop: asyncio.Event, companion: Companion | None = None) -> int:
    """Serve until `stop` is set. The exit status: 0; 1 if a port cannot be bound now (in
    use); 2 for bad certificates, or an address that cannot be (no such name here). A
    companion that fails sets `stop`, and is cancelled before the exporter stops.
    """
    log = structlog.get_logger("app")
    status = 0
    try:
        async with Exporter(config) as exporter:
            beside = asyncio.create_task(companion(exporter)) if companion else None
            if beside is not None:
                beside.add_done_callback(lambda _task: stop.set())
            await stop.wait()
            if beside is not None and beside.done() and not beside.cancelled():
                failure = beside.exception()
                if failure is not None:
                    log.error("stopping: the task beside the exporter failed", error=str(failure))
                    status = 1
            if beside is not None:
                await cancel_and_wait([beside])
    except CertificateFilesError as error:
        log.error("cannot load a certificate", error=str(error))  # noqa: TRY400 - no traceback
        return 2
    except WebConfigError as error:
        log.error("cannot use a web configuration", error=str(error))  # noqa: TRY400
        return 2
    except FileInputError as error:
        log.error("cannot read --file-input", error=str(error), flag="--file-input")  # noqa: TRY400
        return 2
    except ListenError as error:
        flag = LISTEN_FLAGS.get(error.listener, error.listener)
        log.error(  # noqa: TRY400 - the reason, named; no traceback
            f"cannot listen on {flag} {error.address}", error=error.strerror, flag=flag
        )
        return 2 if error.misconfigured else 1
    except OSError as error:
        log.error("cannot serve HTTP", error=str(error))  # noqa: TRY400 - no traceback wanted
        return 1
    return status


def warn_of_expiring_certificates(config: Config, log: Any) -> None:  # noqa: ANN401
    """A certificate that expires within 14 days (the shipped alert's window) needs renewing."""
    held = HeldCertificates(config.certificate_files())
    for role, path, expires in held.expiring(WARN_BEFORE_EXPIRY):
        log.warning("certificate expires soon", role=role, path=path, expires=utc_time(expires))


async def serve_until_signalled(config: Config, loop_name: str = "asyncio") -> int:
    """The exporter command: serve until SIGTERM or SIGINT."""
    log = structlog.get_logger("app")
    log.info(
        "starting falco-exporter",
        version=__version__,
        event_loop=loop_name,
        json_parser=json_parser.PARSER_NAME,
        **config.summary(),
    )
    log.debug("effective configuration", config=config.settings.effective())
    if config.grpc is not None and config.grpc.only_the_socket:
        log.info(
            "no input given: reading Falco's gRPC socket, as Falco up to 0.43 serves it; "
            "Falco 0.44 and later have no gRPC: give --http-input-address and point Falco's "
            "http_output at it (README, Falco 0.44 and later)",
            socket=config.grpc.targets[0],
        )
    warn_of_expiring_certificates(config, log)
    for sentence in advice(config):
        log.warning(sentence)
    stop = asyncio.Event()
    with stop_on_signals(stop):
        status = await serve(config, stop)
    log.info("stopped", status=status)
    return status
