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


def untyped_report_inputs(source: str) -> list[str]:
    """``function(parameter)`` for each parameter of a function in ``source`` annotated as an untyped
    mapping (``dict[str, Any]``, ``dict`` or ``Any``): what the report reads must be a record's type.
    A record's ``upgrade`` is the exception: it reads a file's JSON before that is a record."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name != "upgrade":
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                hint = ast.unparse(arg.annotation) if arg.annotation else ""
                if "dict[str, Any]" in hint or hint in ("dict", "Any"):
                    found.append(f"{node.name}({arg.arg})")
    return found


def test_the_report_reads_records_not_dicts():
    """Every section, figure, table and the summary take the study's typed records (``StudyRecords``) or
    their parts; a function of the report taking a plain dict is a stage boundary gone untyped."""
    offenders = {str(path.relative_to(SRC)): found for path in sorted((SRC / "report").glob("*.py"))
                 if (found := untyped_report_inputs(path.read_text()))}
    assert offenders == {}
    # The check itself: a section taking a dict, or Any, is found.
    assert untyped_report_inputs("def section(data: dict[str, Any], figures: dict[str, str]) -> str: ...") == [
        "section(data)"]
    assert untyped_report_inputs("def cell(value: Any) -> str: ...") == ["cell(value)"]


def test_help_imports_no_heavy_library():
    code = ("import sys; from typer.testing import CliRunner; from lorascope.cli.main import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'datasets', 'scipy', 'optuna', 'fastapi') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# The oldest torch lorascope supports: transformers 5 switches torch off below 2.6
# (`transformers.utils.import_utils.is_torch_available`), so a lower floor would be a false promise.
OLDEST_SUPPORTED_TORCH = "2.6.0"


def _declared(name: str):
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == name)


def _tested_set() -> dict[str, str]:
    """constraints.txt as {name: version}: the pinned set the Makefile installs."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: '{line}' is not an exact pin"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_the_package_declares_ranges_and_the_makefile_pins_from_constraints():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = [r for r in project["dependencies"] if "==" in r]
    assert not pinned, f"exact pins belong in constraints.txt, not the package: {pinned}"
    torch = _declared("torch")
    # The range holds the oldest supported release and the tested one, and nothing older.
    assert torch.specifier.contains(OLDEST_SUPPORTED_TORCH) and torch.specifier.contains("2.13.0")
    assert not torch.specifier.contains("2.5.1"), f"torch{torch.specifier}: transformers 5 does not run below 2.6"
    tested = _tested_set()
    assert tested["torch"] == "2.13.0"
    for name in ("transformers", "peft", "accelerate", "numpy", "optuna"):
        assert name in tested, f"constraints.txt does not pin {name}: the tested set must be complete"
    makefile = (REPO / "Makefile").read_text()
    assert "-c constraints.txt torch" in makefile and "-c constraints.txt -e" in makefile


def test_every_pinned_dependency_accepts_the_oldest_supported_torch():
    """A floor that the tested set contradicts would make pip upgrade a supported torch: every
    distribution in constraints.txt that requires torch accepts the declared floor."""
    import importlib.metadata

    from packaging.requirements import Requirement

    floor = next(s.version for s in _declared("torch").specifier if s.operator == ">=")
    assert floor in (OLDEST_SUPPORTED_TORCH, OLDEST_SUPPORTED_TORCH.removesuffix(".0"))
    demands = {}
    for name in _tested_set():
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.name == "torch" and (req.marker is None or req.marker.evaluate({"extra": ""})):
                demands[name] = str(req.specifier)
                assert req.specifier.contains(OLDEST_SUPPORTED_TORCH), (
                    f"{name} in constraints.txt requires torch{req.specifier}: raise the declared floor or pin an older {name}")
    assert "accelerate" in demands and "peft" in demands  # the check read real metadata


def test_the_readme_states_the_declared_torch_range():
    torch = _declared("torch")
    assert f"torch{torch.specifier}" in (REPO / "README.md").read_text(), f"README does not name torch{torch.specifier}"


@pytest.mark.slow
def test_installing_lorascope_keeps_the_torch_already_there(tmp_path):
    """A venv with the oldest supported torch (a stand-in distribution of that version) keeps it:
    pip resolves ``pip install -e .`` against the tested set (constraints.txt less torch) without
    touching torch, so the answer does not change when a dependency publishes a release.
    Needs the package index."""
    fake = tmp_path / "fake-torch"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(f'__version__ = "{OLDEST_SUPPORTED_TORCH}"\n')
    (fake / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "torch"\nversion = "{OLDEST_SUPPORTED_TORCH}"\n[tool.setuptools]\npackages = ["torch"]\n')
    tested = tmp_path / "tested-set.txt"
    tested.write_text("".join(f"{n}=={v}\n" for n, v in _tested_set().items() if n != "torch"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q"]
    setup = subprocess.run([*pip, "install", str(fake)], capture_output=True, text=True, timeout=300)
    if setup.returncode != 0:  # building the stand-in needs setuptools from the package index
        pytest.skip(f"the package index is not reachable: {setup.stderr[-300:]}")
    report = tmp_path / "report.json"
    dry_run = subprocess.run([*pip, "install", "-e", str(REPO), "-c", str(tested), "--dry-run", "--report", str(report)],
                             capture_output=True, text=True, timeout=600)
    assert dry_run.returncode == 0, dry_run.stderr[-2000:]
    planned = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}
    assert "lorascope" in planned and "transformers" in planned
    assert "torch" not in planned, f"pip would replace torch {OLDEST_SUPPORTED_TORCH} with {planned.get('torch')}"


def test_every_report_template_is_rendered_and_every_rendered_template_exists():
    """The report's prose lives in report/templates: a template no code renders is dead prose, and a
    name no template has fails only when that section is reached."""
    import ast

    report = REPO / "src" / "lorascope" / "report"
    rendered = set()
    for path in report.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "render_template"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                rendered.add(node.args[0].value)
    templates = {p.name for p in (report / "templates").glob("*.md.j2")}
    assert len(rendered) >= 20, "no render_template calls found"
    assert rendered - templates == set(), "rendered templates that do not exist"
    assert templates - rendered == set(), "templates no code renders"


def test_the_report_formats_numbers_only_through_lorascope_metrics():
    """Every number in the report's text is written by a ``lorascope.metrics.format_*`` function (in a
    template, by its filter): no f-string format spec in the report's Python and no numeric ``%`` or
    ``{:…}`` format in its templates, so one change of how a p or a ratio reads changes it everywhere.
    interactive.py is left out: its ``%{y:.5f}`` are plotly's hover templates, formatted in the browser."""
    import ast
    import re

    report = REPO / "src" / "lorascope" / "report"

    def specs(source: str) -> list[int]:
        """Lines of f-string fields with a format spec (``{x:.3f}``, ``{p:g}``, ``{d:+.2f}``)."""
        return [node.lineno for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.FormattedValue) and node.format_spec is not None]

    template_spec = re.compile(r'%[-+#0-9.]*[dfgeE%][^"]*"\s*\|\s*format|\{:[-+#0-9.]*[dfgeE%]\}')
    offending = [f"{path.name}:{line}" for path in sorted(report.glob("*.py")) if path.name != "interactive.py"
                 for line in specs(path.read_text(encoding="utf-8"))]
    offending += [f"{path.name}:{i}: {line.strip()}" for path in sorted((report / "templates").glob("*.j2"))
                  for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if template_spec.search(line)]
    assert offending == [], "numbers formatted outside lorascope.metrics:\n" + "\n".join(offending)
    # The checks find what they are meant to, and leave plain text alone.
    assert len(specs('f"{x:.3f} {p:g} {v:.{digits}f} {d:+.2f} {name}"')) == 4
    assert template_spec.search('{{ "%.3f" | format(x) }}') and template_spec.search('{{ "{:.0%}".format(c) }}')
    assert not template_spec.search('{{ " (%s)" | format(note) }}') and not template_spec.search("{{ x | number(3) }}")
