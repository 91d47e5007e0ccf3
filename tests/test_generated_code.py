"""The committed code in exporter/falcopb is what tools/gen_protos.py makes from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from exporter.falcopb import outputs_pb2, schema_pb2, version_pb2
from tests.support import REPO


def stale_files(script: str, committed: Path, out: Path) -> list[str]:
    """Run a generator into `out`; the names of files that differ from the committed ones."""
    subprocess.run(
        [sys.executable, str(REPO / "tools" / script), str(out)], check=True, timeout=120
    )
    return sorted(
        fresh.name
        for fresh in out.iterdir()
        if not (committed / fresh.name).is_file()
        or (committed / fresh.name).read_bytes() != fresh.read_bytes()
    )


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    """Regenerating gives byte-identical files; run `make protos` when this fails."""
    stale = stale_files("gen_protos.py", REPO / "exporter" / "falcopb", tmp_path)
    assert not stale, f"stale generated files {stale}: run `make protos`"


def test_wire_names_match_falco() -> None:
    """Package, message, service names and field numbers are Falco's (the wire contract doc)."""
    response = outputs_pb2.DESCRIPTOR.message_types_by_name["response"]
    assert response.full_name == "falco.outputs.response"
    assert {f.name: f.number for f in response.fields} == {
        "time": 1,
        "priority": 2,
        "source_deprecated": 3,
        "rule": 4,
        "output": 5,
        "output_fields": 6,
        "hostname": 7,
        "tags": 8,
        "source": 9,
    }
    service = outputs_pb2.DESCRIPTOR.services_by_name["service"]
    assert service.full_name == "falco.outputs.service"
    assert sorted(m.name for m in service.methods) == ["get", "sub"]
    assert version_pb2.DESCRIPTOR.services_by_name["service"].full_name == "falco.version.service"
    priorities = schema_pb2.priority
    assert [priorities.Value(n) for n in ("EMERGENCY", "WARNING", "DEBUG")] == [0, 4, 7]


def test_dashboard_is_up_to_date(tmp_path: Path) -> None:
    """deploy/grafana/ is what tools/gen_dashboard.py writes; run it when this fails."""
    stale = stale_files("gen_dashboard.py", REPO / "deploy" / "grafana", tmp_path)
    assert not stale, f"stale dashboard files {stale}: run tools/gen_dashboard.py"


def test_alert_rules_are_up_to_date(tmp_path: Path) -> None:
    """Both rules files are what tools/gen_rules.py writes; run it when this fails."""
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_rules.py"), str(tmp_path)],
        check=True,
        timeout=120,
    )
    committed = {
        "falco-exporter-rules.yaml": REPO / "deploy" / "prometheus",
        "prometheusrule.yaml": REPO / "deploy" / "k8s" / "rules",
    }
    stale = [
        name
        for name, folder in committed.items()
        if (folder / name).read_bytes() != (tmp_path / name).read_bytes()
    ]
    assert not stale, f"stale rules files {stale}: run tools/gen_rules.py"
