"""The layout keeps its rules (docs/architecture.md): the import contracts, and small modules."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO, find_tool

PACKAGE = REPO / "exporter"
MAX_LINES = 300


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's verdict on the package under `root`, with the project's contracts."""
    tool = find_tool("lint-imports")
    if tool is None:
        pytest.skip("import-linter is not installed (make test installs it)")
    return subprocess.run(
        [tool, "--no-cache", str(REPO / "pyproject.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_the_import_contracts_hold() -> None:
    """Layers only import downwards, no input imports another, grpc stays in its input."""
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("core/event.py", "import exporter.serve.live", "Each layer imports only"),
        ("inputs/http/site.py", "import exporter.inputs.grpc.report", "No input imports another"),
        ("serve/endpoints.py", "import grpc", "Only the gRPC input"),
    ],
)
def test_a_broken_rule_is_caught(tmp_path: Path, module: str, line: str, contract: str) -> None:
    """A copy of the package with one forbidden import fails its contract, by name."""
    copy = tmp_path / "exporter"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def test_no_module_is_over_300_lines() -> None:
    """Small modules with one job each: none of ours (generated code aside) passes 300 lines."""
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
        if "falcopb" not in path.parts
    }
    assert len(sizes) > 40, "the walk found too few modules to mean anything"
    assert {name: size for name, size in sizes.items() if size > MAX_LINES} == {}


def test_every_subpackage_says_what_it_owns_and_may_import() -> None:
    """Each subpackage's docstring names what it may import (or that it is generated)."""
    for init in PACKAGE.rglob("__init__.py"):
        if "falcopb" in init.parts or init.parent in (PACKAGE, PACKAGE / "simulator"):
            continue
        text = init.read_text(encoding="utf-8")
        assert text.startswith('"""'), init
        assert "import" in text.split('"""')[1], f"{init}: no import rule in its docstring"


def imports_of_other_tests(path: Path) -> list[str]:
    """Where a module imports a test module or conftest.py: `line: module`, once an import."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            joined = base if base.endswith(".") else f"{base}."
            # `from tests import conftest`, `from . import test_x`: the names are modules.
            modules = [base, *(joined + alias.name for alias in node.names)]
        else:
            continue
        for module in modules:
            last = module.rsplit(".", 1)[-1]
            if last == "conftest" or last.startswith("test_"):
                found.append(f"{node.lineno}: {module}")
                break
    return found


def test_no_test_module_imports_another_or_conftest() -> None:
    """What tests share is in tests/support; fixtures come from conftest.py by injection,
    never by import (an import runs the other module's module-level skips, and ties them)."""
    tests = REPO / "tests"
    modules = [*sorted(tests.glob("test_*.py")), tests / "conftest.py"]
    assert len(modules) > 30, "the walk found too few test modules to mean anything"
    offenders = {
        str(path.relative_to(REPO)): found
        for path in modules
        if (found := imports_of_other_tests(path))
    }
    assert offenders == {}, f"import what is shared from tests.support instead: {offenders}"


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("from tests.test_http_input import EVENT", "tests.test_http_input"),
        ("from tests.conftest import MakeExporter", "tests.conftest"),
        ("import tests.test_prometheus", "tests.test_prometheus"),
        ("from tests import conftest", "tests.conftest"),
        ("from . import test_deploy", ".test_deploy"),
        ("from .test_process import running", ".test_process"),
    ],
)
def test_an_import_of_another_test_module_is_caught(tmp_path: Path, line: str, named: str) -> None:
    """Each way of writing such an import is found, with its line; tests.support is not."""
    module = tmp_path / "test_example.py"
    allowed = "from tests.support import REPO\nfrom tests import support\n"
    module.write_text(f'"""A test module."""\n\n{allowed}{line}\n')
    assert imports_of_other_tests(module) == [f"5: {named}"]
