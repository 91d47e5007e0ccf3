"""`falco-exporter certs`: certificates for mutual TLS between Falco and the exporter.

Writes, from a new CA or an existing one (`--ca-cert`/`--ca-key`, so that certificates
issued before keep working through a rotation):
- gRPC (Falco <= 0.43): Falco's server certificate with the names the exporter dials, and
  the exporter's client certificate;
- the HTTP input (Falco 0.44+): the exporter's server certificate for the names Falco posts
  to, and Falco's client certificate for `http_output.mtls`.
Then prints the commands and the Falco chart values that use them, with the paths where
the chart mounts them. It never replaces a file without `--force`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from collections.abc import Sequence
from pathlib import Path

from exporter.simulator.certs import (
    CertificateAuthority,
    KeyPair,
    write_cert_set,
    write_private,
    write_public,
)

# The HTTP input's set, beside the gRPC set's ca.crt, server.* and client.*.
HTTP_INPUT_FILES = ("http-input.crt", "http-input.key", "falco-client.crt", "falco-client.key")
GRPC_FILES = ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="falco-exporter certs",
        allow_abbrev=False,
        description="Write a CA (or reuse one), the gRPC pair (Falco's server certificate, the "
        "exporter's client certificate) and the HTTP input pair (the exporter's server "
        "certificate, Falco's client certificate), keys 0600, and print how to install them.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument(
        "--falco-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name the exporter reaches Falco's gRPC by, e.g. falco-grpc.falco.svc; "
        "repeatable (localhost and 127.0.0.1 are always included)",
    )
    parser.add_argument(
        "--exporter-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name Falco posts to the HTTP input by (default: "
        "falco-exporter-input.<exporter namespace>.svc); repeatable",
    )
    parser.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    parser.add_argument("--ca-cert", type=Path, help="issue from this existing CA certificate")
    parser.add_argument("--ca-key", type=Path, help="... and its private key")
    parser.add_argument(
        "--force", action="store_true", help="replace files that already exist in --out"
    )
    parser.add_argument(
        "--exporter-namespace",
        default="falco-exporter",
        help="namespace of the exporter's Secrets (default: falco-exporter)",
    )
    parser.add_argument(
        "--falco-namespace",
        default="falco",
        help="namespace of Falco's Helm release (default: falco)",
    )
    return parser


def _certificate_authority(
    parser: argparse.ArgumentParser, options: argparse.Namespace
) -> tuple[CertificateAuthority, bool]:
    """The CA to issue from, and whether it is new (then its key is written too)."""
    if bool(options.ca_cert) != bool(options.ca_key):
        parser.error("--ca-cert and --ca-key go together")
    if not options.ca_cert:
        return CertificateAuthority("falco-exporter CA", days=options.days), True
    try:
        ca = CertificateAuthority.load(options.ca_cert.read_bytes(), options.ca_key.read_bytes())
    except (OSError, ValueError) as error:
        parser.error(f"--ca-cert {options.ca_cert} / --ca-key {options.ca_key}: {error}")
    return ca, False


def run_certs(args: Sequence[str]) -> int:
    """Write the files and print how to use them; 0 on success, 2 on bad arguments."""
    parser = _parser()
    options = parser.parse_args(args)
    if options.days < 1:
        parser.error("--days must be at least 1")
    ca, new_ca = _certificate_authority(parser, options)
    out: Path = options.out
    planned = [*GRPC_FILES, *HTTP_INPUT_FILES, *(["ca.key"] if new_ca else [])]
    existing = [name for name in planned if (out / name).exists()]
    if existing and not options.force:
        parser.error(
            f"{out} already holds {', '.join(existing)}; a new set would replace them (and with "
            "a new CA, break every certificate issued before). Reuse the CA with --ca-cert "
            f"{out / 'ca.crt'} --ca-key {out / 'ca.key'}, and add --force to replace the files"
        )
    grpc_names = tuple(dict.fromkeys([*options.falco_name, "localhost"]))
    input_names = tuple(
        dict.fromkeys(
            [
                *(
                    options.exporter_name
                    or [f"falco-exporter-input.{options.exporter_namespace}.svc"]
                ),
                "localhost",
            ]
        )
    )
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=options.days)
    paths = write_cert_set(
        out,
        ca,
        server=ca.issue(grpc_names[0], server=True, dns_names=grpc_names, valid_until=until),
        client=ca.issue("falco-exporter", server=False, valid_until=until),
    )
    if new_ca:
        write_private(out / "ca.key", ca.key_pem)
    elif options.ca_cert.resolve() != paths.ca.resolve():
        shutil.copyfile(options.ca_cert, paths.ca)
    _write_pair(
        out, "http-input",
        ca.issue(input_names[0], server=True, dns_names=input_names, valid_until=until),
    )  # fmt: skip
    _write_pair(out, "falco-client", ca.issue("falco", server=False, valid_until=until))
    print(_instructions(options, out, grpc_names, input_names, new_ca))
    return 0


def _write_pair(out: Path, stem: str, pair: KeyPair) -> None:
    write_public(out / f"{stem}.crt", pair.cert_pem)
    write_private(out / f"{stem}.key", pair.key_pem)


def _instructions(
    options: argparse.Namespace,
    out: Path,
    grpc_names: Sequence[str],
    input_names: Sequence[str],
    new_ca: bool,
) -> str:
    """What to run next, with the paths filled in."""
    falco_ns, exporter_ns = options.falco_namespace, options.exporter_namespace
    ca_note = (
        "ca.key (keep it safe; reuse it with --ca-cert/--ca-key)"
        if new_ca
        else (f"no CA key (issued from {options.ca_cert})")
    )
    return f"""Wrote into {out}: ca.crt, {ca_note},
server.crt/.key and client.crt/.key (gRPC), http-input.crt/.key and falco-client.crt/.key
(the HTTP input). Falco's gRPC certificate is valid for {", ".join(grpc_names)}, 127.0.0.1, ::1;
the HTTP input's for {", ".join(input_names)}, 127.0.0.1, ::1.

== The HTTP input with mutual TLS (Falco 0.44+) ==
The exporter's side:
  kubectl -n {exporter_ns} create secret generic falco-exporter-input-certs \\
    --from-file=tls.crt={out / "http-input.crt"} \\
    --from-file=tls.key={out / "http-input.key"} \\
    --from-file=ca.crt={out / "ca.crt"}
  and run the exporter with --http-input-cert, --http-input-key and --http-input-ca
  pointing at where that Secret is mounted.
Falco's side (the chart mounts certs.client.* and certs.ca.crt under /etc/falco/certs/client/):
  helm upgrade --install falco falcosecurity/falco -n {falco_ns} --create-namespace \\
    --version 9.x -f deploy/falco/values-http-output.yaml \\
    --set-file certs.client.crt={out / "falco-client.crt"} \\
    --set-file certs.client.key={out / "falco-client.key"} \\
    --set-file certs.ca.crt={out / "ca.crt"} \\
    --set falco.http_output.url=https://{input_names[0]}:2801/ \\
    --set falco.http_output.mtls=true \\
    --set falco.http_output.client_cert=/etc/falco/certs/client/client.crt \\
    --set falco.http_output.client_key=/etc/falco/certs/client/client.key \\
    --set falco.http_output.ca_cert=/etc/falco/certs/client/ca.crt

== gRPC with mutual TLS (Falco <= 0.43; chart 8.x) ==
Falco's side:
  helm upgrade --install falco falcosecurity/falco -n {falco_ns} \\
    --create-namespace --version 8.x -f deploy/falco/values-grpc-mtls.yaml \\
    --set-file certs.server.key={out / "server.key"} \\
    --set-file certs.server.crt={out / "server.crt"} \\
    --set-file certs.ca.crt={out / "ca.crt"}
The exporter's side:
  kubectl create namespace {exporter_ns}
  kubectl -n {exporter_ns} create secret generic falco-exporter-client-certs \\
    --from-file=ca.crt={out / "ca.crt"} \\
    --from-file=client.crt={out / "client.crt"} \\
    --from-file=client.key={out / "client.key"}
  kubectl apply -k deploy/k8s/overlays/grpc-mtls
Or on a laptop, through kubectl -n {falco_ns} port-forward pod/<falco-pod> 5060:
  falco-exporter --client-hostname localhost --client-port 5060 \\
    --client-cert {out / "client.crt"} --client-key {out / "client.key"} \\
    --client-ca {out / "ca.crt"}"""
