"""docs/architecture.md is the source of truth for the package's layers: every package it names
exists, every package is named, and the rules it states hold for the code."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SRC = REPO / "src" / "lorascope"
DOC = REPO / "docs" / "architecture.md"
HEAVY = ("torch", "transformers", "peft", "matplotlib")


def layer_table() -> dict[str, int]:
    """Package -> its layer, read from the document's layer table."""
    layers = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(\d+) [^|]*\|([^|]*)\|", line)
        if m:
            for name in re.findall(r"`([a-z_]+)`", m.group(2)):
                layers[name] = int(m.group(1))
    return layers


def packages() -> set[str]:
    """Every top-level package or module of src/lorascope (``__init__`` and ``py.typed`` aside)."""
    return {p.name if p.is_dir() else p.stem for p in SRC.iterdir()
            if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and p.stem != "__init__")}


def imports_of(package: str) -> set[tuple[str, str]]:
    """(file, imported top-level module) for every import in a package, inside functions too."""
    root = SRC / package
    files = sorted(root.rglob("*.py")) if root.is_dir() else [SRC / f"{package}.py"]
    out = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            out |= {(str(path.relative_to(SRC)), n) for n in names}
    return out


def test_every_package_is_in_the_layer_table_and_every_named_one_exists():
    named = layer_table()
    assert len(named) >= 20, "the layer table could not be read"
    assert set(named) - packages() == set(), "docs/architecture.md names packages that do not exist"
    assert packages() - set(named) == set(), "packages missing from docs/architecture.md's layer table"


def test_no_package_imports_from_a_layer_above_its_own():
    layers = layer_table()
    upward = []
    for package, layer in layers.items():
        for where, module in imports_of(package):
            parts = module.split(".")
            if parts[0] == "lorascope" and len(parts) > 1 and layers.get(parts[1], -1) > layer:
                upward.append(f"{where} (layer {layer}) imports {module} (layer {layers[parts[1]]})")
    assert not upward, "\n".join(upward)


def test_computation_imports_no_model_or_plotting_library_and_opens_no_file():
    for package in ("similarity", "stats", "weight_update"):
        heavy = [(w, m) for w, m in imports_of(package) if m.split(".")[0] in HEAVY]
        assert not heavy, heavy
        for path in (SRC / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"\bopen\(|\.write_text\(|\.read_text\(|np\.save|np\.load", text), path


@pytest.mark.slow
def test_the_report_loads_no_model_library():
    code = ("import importlib, pkgutil, sys, lorascope.report as r\n"
            "[importlib.import_module('lorascope.report.' + m.name) for m in pkgutil.iter_modules(r.__path__)]\n"
            f"print([k for k in {HEAVY[:3]!r} if k in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_every_citation_of_the_protocol_names_a_section_it_has():
    protocol = (REPO / "docs" / "protocol.md").read_text(encoding="utf-8")
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", protocol, flags=re.M)}
    cited = []
    for path in [*SRC.rglob("*.py"), *(REPO / "configs").rglob("*.yaml"), REPO / "README.md"]:
        text = path.read_text(encoding="utf-8")
        assert "PROTOCOL.md" not in text, f"{path} cites a protocol file the repository does not hold"
        cited += [(path.name, int(n)) for n in re.findall(r"docs/protocol\.md §(\d+)", text)]
    assert cited, "nothing cites docs/protocol.md"
    assert [c for c in cited if c[1] not in sections] == []
