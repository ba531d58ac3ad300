"""The shape of the package, checked: no import circles, the HTTP server independent of the benchmark,
one reader of run records, and a command line that starts without the heavy libraries."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

SRC = REPO / "src" / "lorascope"


def _module_name(path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path) -> set[str]:
    """lorascope modules ``path`` imports anywhere in it (inside functions too: a circle is a circle)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lorascope"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("lorascope")}
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # A package's __init__ only names its exports (lazily), so an edge goes to the module itself.
        graph[name] = {m for m in _imports(path) if m in modules and m != name and not modules[m].name == "__init__.py"}
    return graph


def test_no_import_circle_between_modules():
    graph = _graph()
    seen, stack, circles = set(), [], []

    def visit(node):
        if node in stack:
            circles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_http_server_imports_nothing_from_the_benchmark():
    graph = _graph()
    offenders = {m: sorted(i for i in imps if i.startswith("lorascope.bench")) for m, imps in graph.items()
                 if m.startswith("lorascope.serve")}
    assert not any(offenders.values()), offenders


def test_only_the_run_folder_type_names_the_run_record_file():
    readers = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == "metrics.json" and path.name != "run_folder.py":
                readers.append(str(path.relative_to(SRC)))
    assert not readers, f"metrics.json named outside lorascope/run_folder.py: {readers}"


def test_help_imports_no_heavy_library():
    code = ("import sys; from typer.testing import CliRunner; from lorascope.cli.main import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'datasets', 'scipy', 'optuna', 'fastapi') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_package_declares_ranges_and_the_makefile_pins_from_constraints():
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = [r for r in project["dependencies"] if "==" in r]
    assert not pinned, f"exact pins belong in constraints.txt, not the package: {pinned}"
    torch = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "torch")
    # Installed beside an older or newer torch, pip keeps it: the range holds both.
    assert torch.specifier.contains("2.5.0") and torch.specifier.contains("2.13.0")
    constraints = (REPO / "constraints.txt").read_text()
    assert "torch==2.13.0" in constraints
    makefile = (REPO / "Makefile").read_text()
    assert "-c constraints.txt torch" in makefile and "-c constraints.txt -e" in makefile


@pytest.mark.slow
def test_installing_lorascope_keeps_the_torch_already_there(tmp_path):
    """A venv with another torch release (a stand-in distribution named torch 2.5.0) keeps it:
    pip resolves ``pip install -e .`` without touching torch. Needs the package index."""
    fake = tmp_path / "fake-torch"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text('__version__ = "2.5.0"\n')
    (fake / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "torch"\nversion = "2.5.0"\n[tool.setuptools]\npackages = ["torch"]\n')
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q"]
    setup = subprocess.run([*pip, "install", str(fake)], capture_output=True, text=True, timeout=300)
    if setup.returncode != 0:  # building the stand-in needs setuptools from the package index
        pytest.skip(f"the package index is not reachable: {setup.stderr[-300:]}")
    report = tmp_path / "report.json"
    dry_run = subprocess.run([*pip, "install", "-e", str(REPO), "--dry-run", "--report", str(report)],
                             capture_output=True, text=True, timeout=600)
    assert dry_run.returncode == 0, dry_run.stderr[-2000:]
    planned = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}
    assert "lorascope" in planned and "transformers" in planned
    assert "torch" not in planned, f"pip would replace torch 2.5.0 with {planned.get('torch')}"
