"""`falco-exporter simulate` and `falco-exporter demo`."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog

from exporter.runtime.process import configure_process
from exporter.runtime.signals import stop_on_signals
from exporter.runtime.tasks import cancel_and_wait
from exporter.settings.load import ConfigError, load_config
from exporter.simulator.arguments import delivery_arguments, events_argument
from exporter.simulator.certs import CertPaths, write_cert_set
from exporter.simulator.certs_cli import run_certs
from exporter.simulator.events import bundled_events_path, load_documents, load_responses
from exporter.simulator.http_output import post_events
from exporter.simulator.server import ServerTls, SimulatedFalco, replay


def run_subcommand(name: str, args: Sequence[str]) -> int:
    """Dispatch `simulate` or `demo`."""
    if name == "simulate":
        return _simulate(args)
    if name == "certs":
        return run_certs(args)
    return _demo(args)


def _simulate(args: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="falco-exporter simulate",
        allow_abbrev=False,
        description="A simulated Falco gRPC server (Falco's outputs semantics) replaying events.",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:5060",
        help="unix:///path (no TLS, like Falco) or host:port (mutual TLS) "
        "(default: 127.0.0.1:5060)",
    )
    parser.add_argument(
        "--certs-dir",
        type=Path,
        default=Path("simulator-certs"),
        help="where the CA, server and client certificates are written, "
        "or reused if present (default: ./simulator-certs)",
    )
    parser.add_argument("--falco-version", default="0.43.0", help="version the RPC reports")
    parser.add_argument("--hostname", default=None, help="hostname to put in every event")
    parser.add_argument(
        "--http-output",
        metavar="URL",
        default=None,
        help="instead of serving gRPC, POST each event to URL as Falco 0.44+'s http_output does",
    )
    parser.add_argument("--http-gzip", action="store_true", help="gzip the POST bodies")
    parser.add_argument("--http-client-cert", type=Path, help="client certificate for mTLS")
    parser.add_argument("--http-client-key", type=Path, help="its private key")
    parser.add_argument("--http-ca", type=Path, help="CA that signed the exporter's certificate")
    delivery_arguments(parser, default_interval=60.0)
    events_argument(parser, default_rate=1.0)
    options = parser.parse_args(args)
    configure_process()
    if options.http_output:
        return asyncio.run(_run_http_output(options))
    return asyncio.run(_run_simulator(options))


async def _run_http_output(options: argparse.Namespace) -> int:
    log = structlog.get_logger("simulator")
    documents = load_documents(options.events or bundled_events_path())
    context = None
    if options.http_ca or options.http_client_cert:
        context = ssl.create_default_context(
            cafile=str(options.http_ca) if options.http_ca else None
        )
        if options.http_client_cert:
            context.load_cert_chain(options.http_client_cert, options.http_client_key)
    log.info(
        "posting events like Falco's http_output",
        url=options.http_output,
        events=len(documents),
        rate=options.rate,
    )
    stop = asyncio.Event()
    with stop_on_signals(stop):
        poster = asyncio.create_task(
            post_events(
                options.http_output,
                documents,
                rate=options.rate,
                loop=not options.once,
                ssl_context=context,
                compress=options.http_gzip,
                snapshot_interval=options.snapshot_interval,
                drop_share=options.drop_share,
                seed=options.seed,
            )
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({poster, stopping}, return_when=asyncio.FIRST_COMPLETED)
        await cancel_and_wait([poster, stopping])
    log.info("simulated Falco stopped")
    return 0


def _certs(directory: Path) -> CertPaths:
    """Reuse a complete set of certificates in directory, or write a new one."""
    paths = CertPaths.in_directory(directory)
    return paths if paths.complete() else write_cert_set(directory)


async def _start_simulator(
    listen: str, certs_dir: Path, version: str, hostname: str | None
) -> tuple[SimulatedFalco, CertPaths | None]:
    falco = SimulatedFalco(version=version, hostname=hostname)
    if listen.startswith("unix://"):
        await falco.start(listen)
        return falco, None
    paths = _certs(certs_dir)
    await falco.start(listen, ServerTls(paths.server_cert, paths.server_key, paths.ca))
    return falco, paths


async def _run_simulator(options: argparse.Namespace) -> int:
    log = structlog.get_logger("simulator")
    messages = load_responses(options.events or bundled_events_path())
    falco, paths = await _start_simulator(
        options.listen, options.certs_dir, options.falco_version, options.hostname
    )
    log.info(
        "simulated Falco listening",
        address=falco.address,
        client_cert=str(paths.client_cert) if paths else None,
        client_key=str(paths.client_key) if paths else None,
        ca=str(paths.ca) if paths else None,
        events=len(messages),
        rate=options.rate,
    )
    stop = asyncio.Event()
    with stop_on_signals(stop):
        feeder = asyncio.create_task(
            replay(falco, messages, rate=options.rate, loop=not options.once)
        )
        await stop.wait()
        await cancel_and_wait([feeder])
        await falco.stop()
    log.info("simulated Falco stopped", delivered=falco.delivered)
    return 0


def _demo(args: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="falco-exporter demo",
        allow_abbrev=False,
        description="The exporter against a simulated Falco over mutual TLS, on one command.",
    )
    parser.add_argument(
        "--listen-address",
        default="127.0.0.1:9376",
        help="the exporter's /metrics and live page; loopback only unless you say otherwise, "
        "as :9376 would (default: 127.0.0.1:9376)",
    )
    parser.add_argument(
        "--probes-listen-address",
        default="127.0.0.1:19376",
        help="the exporter's /liveness and /readiness (default: 127.0.0.1:19376)",
    )
    parser.add_argument(
        "--http",
        action="store_true",
        help="deliver the events as Falco 0.44+ does: JSON POSTs to the "
        "exporter's HTTP input, instead of gRPC",
    )
    parser.add_argument(
        "--http-input-address",
        default="127.0.0.1:2801",
        help="the exporter's HTTP input with --http (default: 127.0.0.1:2801)",
    )
    delivery_arguments(parser, default_interval=10.0)
    events_argument(parser, default_rate=2.0)
    options = parser.parse_args(args)
    configure_process()
    return asyncio.run(_run_demo(options))


async def _run_demo(options: argparse.Namespace) -> int:
    from exporter.app import Exporter  # noqa: PLC0415
    from exporter.runner import serve  # noqa: PLC0415

    log = structlog.get_logger("demo")
    ports = {
        "listen_address": options.listen_address,
        "probes_listen_address": options.probes_listen_address,
    }
    with tempfile.TemporaryDirectory(prefix="falco-exporter-demo-") as tmp:
        falco: SimulatedFalco | None = None
        if options.http:
            flags = {**ports, "http_input_address": options.http_input_address}
        else:
            falco, paths = await _start_simulator("127.0.0.1:0", Path(tmp), "0.43.0", None)
            assert paths is not None
            flags = {
                **ports,
                "client_hostname": "localhost",
                "client_port": falco.address.rsplit(":", 1)[1],
                "client_cert": str(paths.client_cert),
                "client_key": str(paths.client_key),
                "client_ca": str(paths.ca),
            }
        try:
            config = load_config(flags, environ={})
        except ConfigError as error:
            print(f"falco-exporter demo: {error}", file=sys.stderr)
            if falco is not None:
                await falco.stop()
            return 2
        events = options.events or bundled_events_path()

        async def feed(exporter: Exporter) -> object:
            work: Coroutine[Any, Any, object]
            if falco is not None:
                path = f"simulated Falco {falco.address} -> mutual TLS gRPC"
                work = replay(
                    falco, load_responses(events), rate=options.rate, loop=not options.once
                )
            else:
                url = f"http://127.0.0.1:{exporter.ports['http_input']}/"
                path = f"simulated Falco -> JSON POSTs to {url}"
                work = post_events(
                    url,
                    load_documents(events),
                    rate=options.rate,
                    loop=not options.once,
                    snapshot_interval=options.snapshot_interval,
                    drop_share=options.drop_share,
                    seed=options.seed,
                    then_idle=True,  # the demo keeps serving: Falco's heartbeat goes on
                )
            log.info(
                f"demo running: {path} -> falco-exporter; Ctrl-C stops both",
                metrics=f"http://localhost:{exporter.main_http.port}/metrics",
            )
            await work
            await asyncio.Event().wait()  # with --once: keep serving what was sent
            return None

        stop = asyncio.Event()
        with stop_on_signals(stop):
            status = await serve(config, stop, feed)
        if falco is not None:
            await falco.stop()
        if status:
            return status
    log.info("demo stopped")
    return 0
