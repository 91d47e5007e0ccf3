"""The README documents every setting and every metric the exporter serves."""

from __future__ import annotations

import re

import pytest

from exporter.settings.schema import SETTINGS, env_name, flag_name
from exporter.simulator.server import SimulatedFalco
from tests.support import REPO, ExporterFor, MakeExporter, fetch, parse_metrics

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


@pytest.mark.parametrize("mode", ["grpc", "http"])
async def test_every_metric_family_is_documented(
    falco: SimulatedFalco, exporter_for: ExporterFor, make_exporter: MakeExporter, mode: str
) -> None:
    """Every family on /metrics, in either input's mode, is named in the README (process
    metrics as `process_*`)."""
    if mode == "grpc":
        exporter = await exporter_for(falco)
    else:
        exporter = await make_exporter(http_input_address="127.0.0.1:0")
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
    for path in (REPO / "README.md", REPO / "docs" / "deploy.md", REPO / "docs" / "quickstart.md"):
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        commands += [line for line in text.splitlines() if "helm upgrade --install falco " in line]
    assert len(commands) >= 5
    for command in commands:
        if "values-grpc" in command or "values-unix-socket" in command:
            assert "--version 8.x" in command, command
        else:
            assert "--version 9.x" in command, command


def github_anchors(markdown: str) -> set[str]:
    """The anchors a Markdown file has: explicit ids, and GitHub's slugs of its headings."""
    anchors = set(re.findall(r'<a id="([^"]+)"', markdown))
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE):
        text = re.sub(r"<[^>]+>", "", heading).strip().lower()
        anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_every_cited_doc_section_exists() -> None:
    """A comment or doc citing a section of a doc (docs/<name>.md#<section>) points at a
    section that is there."""
    cited: dict[tuple[str, str], str] = {}
    for path in [*REPO.glob("exporter/**/*.py"), *REPO.glob("tests/*.py"), *REPO.glob("*.md")]:
        for name, anchor in re.findall(r"docs/([\w-]+)\.md#([\w-]+)", path.read_text()):
            cited[(name, anchor)] = str(path.relative_to(REPO))
    assert len(cited) >= 3, "the scan found too few citations to mean anything"
    for (name, anchor), where in sorted(cited.items()):
        doc = REPO / "docs" / f"{name}.md"
        assert doc.exists(), f"{where} cites {doc}"
        assert anchor in github_anchors(doc.read_text()), f"{where} cites {name}.md#{anchor}"


def test_the_readme_meets_falco_0_44_users_first() -> None:
    """After the set-up commands and the overview: installing, then the HTTP input (Falco
    0.44 and later, the majority), then gRPC for Falco up to 0.43."""
    headings = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    install = headings.index("Installing")
    http = headings.index("Falco 0.44 and later: the HTTP input")
    grpc = headings.index("Running against a real Falco (gRPC: Falco 0.24 to 0.43)")
    assert install < http < grpc
    assert "pip install '.[fast]'" in README.split("## Falco 0.44 and later")[0]
