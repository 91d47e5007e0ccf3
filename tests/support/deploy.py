"""What ships, for the tests of the manifests and the chart: the Kubernetes version their
schemas are checked against, the measured figures the resources rest on, and Kubernetes'
quantities."""

from __future__ import annotations

# The Kubernetes version whose schemas (kubernetes-validate, strict) every object must pass.
KUBERNETES_VERSION = "1.31.0"

# RSS at the default --max-series (10,000) and the peak there, MiB, from bench/memory.py.
MEASURED_MIB = {"http-input": (44, 44), "grpc-mtls": (57, 61), "daemonset-socket": (54, 58)}

# Idle CPU with one Falco target, millicores, from bench/memory.py.
IDLE_MILLICORES = {"http-input": 0, "grpc-mtls": 22, "daemonset-socket": 21}


def millicores(quantity: str) -> int:
    """A Kubernetes CPU quantity ("30m", "1") in millicores."""
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def mebibytes(quantity: str) -> int:
    """A Kubernetes memory quantity in Mi or Gi, as MiB."""
    number, unit = quantity[:-2], quantity[-2:]
    return int(number) * {"Mi": 1, "Gi": 1024}[unit]
