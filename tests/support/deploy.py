"""What ships, for the tests of the manifests and the chart: the Kubernetes version their
schemas are checked against, Kubernetes' quantities, and deploy/resources.yaml, the one
place the exporter's measured CPU and memory and each deployment's requests and limits
are written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import yaml

from tests.support import REPO

# The Kubernetes version whose schemas (kubernetes-validate, strict) every object must pass.
KUBERNETES_VERSION = "1.31.0"
RESOURCES_FILE = REPO / "deploy" / "resources.yaml"


@dataclass(frozen=True)
class Measured:
    """One mode as bench/memory.py measured it at the default --max-series (10,000)."""

    row: str  # its row in the command's table
    idle_rss_mib: float
    idle_millicores: float
    rss_at_default_limit_mib: float
    peak_at_default_limit_mib: float


@dataclass(frozen=True)
class Deployment:
    """One way of deploying: its requests and limits, as Kubernetes writes them, and the
    measured mode they rest on."""

    name: str
    measured: Measured
    requests: dict[str, str]
    limits: dict[str, str]

    @property
    def resources(self) -> dict[str, dict[str, str]]:
        """The container's `resources`, as deploy/resources.yaml writes them."""
        return {"requests": self.requests, "limits": self.limits}

    def agrees_with(self, rendered: dict[str, Any]) -> bool:
        """Whether a rendered container's `resources` are these, quantity for quantity
        (`cpu: 1` and `cpu: "1"` are one CPU)."""
        return quantities(rendered) == quantities(self.resources)


@dataclass(frozen=True)
class Resources:
    """deploy/resources.yaml."""

    date: dt.date
    command: str
    modes: dict[str, Measured]
    deployments: dict[str, Deployment]


def load_resources() -> Resources:
    """deploy/resources.yaml, read; a key missing or unknown fails here, naming it."""
    document: dict[str, Any] = yaml.safe_load(RESOURCES_FILE.read_text(encoding="utf-8"))
    measured = document["measured"]
    modes = {name: Measured(**figures) for name, figures in measured["modes"].items()}
    deployments = {
        name: Deployment(
            name,
            modes[spec["measured"]],
            {key: str(value) for key, value in spec["requests"].items()},
            {key: str(value) for key, value in spec["limits"].items()},
        )
        for name, spec in document["deployments"].items()
    }
    assert isinstance(measured["date"], dt.date), "measured.date: a date, YYYY-MM-DD"
    return Resources(measured["date"], measured["command"], modes, deployments)


def millicores(quantity: str) -> int:
    """A Kubernetes CPU quantity ("30m", "1") in millicores."""
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def mebibytes(quantity: str) -> int:
    """A Kubernetes memory quantity in Mi or Gi, as MiB."""
    number, unit = quantity[:-2], quantity[-2:]
    return int(number) * {"Mi": 1, "Gi": 1024}[unit]


def quantities(resources: dict[str, Any]) -> dict[str, dict[str, int]]:
    """A container's `resources` as numbers: CPU in millicores, memory in MiB."""
    units = {"cpu": millicores, "memory": mebibytes}
    return {
        kind: {name: units[name](str(value)) for name, value in values.items()}
        for kind, values in resources.items()
    }
