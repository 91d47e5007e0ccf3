"""`falco-exporter certs`: certificates for mutual TLS between Falco and the exporter.

Writes a CA, Falco's server certificate with the names the exporter dials, and the
exporter's client certificate, then prints the commands that install them.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from exporter.simulator.certs import CertificateAuthority, write_cert_set, write_private


def run_certs(args: Sequence[str]) -> int:
    """Write the files and print how to use them; 0 on success, 2 on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="falco-exporter certs",
        allow_abbrev=False,
        description="Write a CA, Falco's gRPC server certificate and the exporter's client "
        "certificate (keys 0600), and print the kubectl and helm commands that use them.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument(
        "--falco-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name the exporter reaches Falco by, e.g. falco-grpc.falco.svc; "
        "repeatable (localhost and 127.0.0.1 are always included)",
    )
    parser.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    parser.add_argument(
        "--exporter-namespace",
        default="falco-exporter",
        help="namespace of the exporter's Secret (default: falco-exporter)",
    )
    parser.add_argument(
        "--falco-namespace",
        default="falco",
        help="namespace of Falco's Helm release (default: falco)",
    )
    options = parser.parse_args(args)
    if options.days < 1:
        parser.error("--days must be at least 1")
    names = tuple(dict.fromkeys([*options.falco_name, "localhost"]))
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=options.days)
    ca = CertificateAuthority("falco-exporter CA", days=options.days)
    paths = write_cert_set(
        options.out,
        ca,
        server=ca.issue(names[0], server=True, dns_names=names, valid_until=until),
        client=ca.issue("falco-exporter", server=False, valid_until=until),
    )
    write_private(options.out / "ca.key", ca.key_pem)
    out = options.out
    print(f"""Wrote into {out}: ca.crt, ca.key (keep it safe), server.crt, server.key,
client.crt, client.key. Falco's certificate is valid for: {", ".join(names)}, 127.0.0.1, ::1.

Falco's side (gRPC with mutual TLS, Falco <= 0.43):
  helm upgrade --install falco falcosecurity/falco -n {options.falco_namespace} \\
    --create-namespace --version 8.x -f deploy/falco/values-grpc-mtls.yaml \\
    --set-file certs.server.key={paths.server_key} \\
    --set-file certs.server.crt={paths.server_cert} \\
    --set-file certs.ca.crt={paths.ca}

The exporter's side:
  kubectl create namespace {options.exporter_namespace}
  kubectl -n {options.exporter_namespace} create secret generic falco-exporter-client-certs \\
    --from-file=ca.crt={paths.ca} \\
    --from-file=client.crt={paths.client_cert} \\
    --from-file=client.key={paths.client_key}
  kubectl apply -k deploy/k8s/overlays/grpc-mtls

Or on a laptop, through kubectl -n {options.falco_namespace} port-forward pod/<falco-pod> 5060:
  falco-exporter --client-hostname localhost --client-port 5060 \\
    --client-cert {paths.client_cert} --client-key {paths.client_key} --client-ca {paths.ca}""")
    return 0
