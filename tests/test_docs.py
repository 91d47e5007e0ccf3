"""The README documents every setting and every metric the exporter serves."""

from __future__ import annotations

import re

from exporter.settings.schema import SETTINGS, env_name, flag_name
from exporter.simulator.server import SimulatedFalco
from tests.support import REPO, ExporterFor, fetch, parse_metrics

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_setup_commands() -> None:
    """The first code block is the demo command, then the test command."""
    first_block = README.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line]
    assert commands == ["make demo", "make test"]


def test_every_setting_is_documented() -> None:
    """Each setting's flag, variable and YAML key appear in the configuration table."""
    for setting in SETTINGS:
        row = f"| `{flag_name(setting.name)}` | `{env_name(setting.name)}` | `{setting.name}` |"
        assert row in README, row


async def test_every_metric_family_is_documented(
    falco: SimulatedFalco, exporter_for: ExporterFor
) -> None:
    """Every family on /metrics is named in the README (process metrics as `process_*`)."""
    exporter = await exporter_for(falco)
    _, body, _ = await fetch(f"http://127.0.0.1:{exporter.main_http.port}/metrics")
    names = set(re.findall(r"^# TYPE (\S+)", body, flags=re.MULTILINE))
    assert "falco_events" in names
    assert parse_metrics(body)
    undocumented = sorted(
        name for name in names if f"`{name}`" not in README and not name.startswith("process_")
    )
    assert not undocumented


def test_every_falco_chart_install_pins_a_chart_with_the_right_falco() -> None:
    """gRPC needs chart 8.x or older (Falco 0.43); chart 9 ships Falco 0.44 without gRPC."""
    commands = []
    for path in (REPO / "README.md", REPO / "docs" / "deploy.md"):
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        commands += [line for line in text.splitlines() if "helm upgrade --install falco " in line]
    assert len(commands) >= 4
    for command in commands:
        if "values-grpc" in command or "values-unix-socket" in command:
            assert "--version 8.x" in command, command
        else:
            assert "--version 9.x" in command, command
