"""Every stage commits its result through one path (``lorascope.artifacts``): shown on the code (no
other module renames folders into place) and on a whole study (every result folder holds its
settings and provenance, nothing half-written is left), and by killing each stage mid-write,
then rerunning to the uninterrupted study's results."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SRC = Path(__file__).resolve().parents[1] / "src" / "lorascope"

# The pieces of the commit path; only lorascope.artifacts may use them (or rename anything).
LOW_LEVEL = {"start_partial", "finish", "recover_finish"}
RENAMES = {("os", "replace"), ("os", "rename"), ("shutil", "move")}


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "lorascope.artifacts":
            found += [f"imports {a.name}" for a in node.names if a.name in LOW_LEVEL]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            if (node.func.value.id, node.func.attr) in RENAMES:
                found.append(f"calls {node.func.value.id}.{node.func.attr} (line {node.lineno})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "rename":
            found.append(f"calls .rename (line {node.lineno})")  # Path.rename
    return found


# Files that rename outside result folders: caches and data files written atomically, not results.
NOT_RESULTS = {"models/cache.py", "data/split.py"}


def test_no_module_but_artifacts_renames_a_folder_into_place():
    bad = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "artifacts.py" or rel in NOT_RESULTS:
            continue
        if found := _violations(path):
            bad[rel] = found
    assert not bad, f"stages must commit through lorascope.artifacts.commit/Commit: {bad}"


def test_the_architecture_check_catches_a_stage_that_renames_by_hand(tmp_path):
    planted = tmp_path / "stage.py"
    planted.write_text("import os\nfrom lorascope.artifacts import finish\n\ndef save(a, b):\n    os.replace(a, b)\n"
                       "    a.rename(b)\n")
    assert _violations(planted) == ["imports finish", "calls os.replace (line 5)", "calls .rename (line 6)"]


def test_a_folder_named_relatively_or_absolutely_is_the_same_setting(tmp_path, monkeypatch):
    """A study run once with ``out=/abs/runs/x`` and again with ``out=runs/x`` finds its results its own."""
    from lorascope.artifacts import Commit
    from lorascope.errors import ConfigError

    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "y").mkdir()
    monkeypatch.chdir(tmp_path)
    Commit(tmp_path / "drift", {"runs": str(tmp_path / "runs" / "x"), "n": 1}).write({"drift.json": {}})
    Commit(tmp_path / "drift", {"runs": "runs/x", "n": 1}).check()
    Commit(tmp_path / "drift", {"runs": "./runs/../runs/x", "n": 1}).check()
    for other in ({"runs": "runs/y", "n": 1}, {"runs": "runs/absent", "n": 1}, {"runs": "runs/x", "n": 2}):
        with pytest.raises(ConfigError, match="different config"):
            Commit(tmp_path / "drift", other).check()


def test_a_unit_with_the_same_settings_and_inputs_is_done_and_other_inputs_redo_it(tmp_path):
    from lorascope.artifacts import Commit
    from lorascope.errors import ConfigError

    out = tmp_path / "weights"
    assert not Commit(out, {"n": 1}, inputs={"run-a": "1"}).done()
    Commit(out, {"n": 1}, inputs={"run-a": "1"}).write({"weights.json": {"v": 1}})
    assert json.loads((out / "inputs.json").read_text()) == {"run-a": "1"}
    assert Commit(out, {"n": 1}, inputs={"run-a": "1"}).done()
    assert not Commit(out, {"n": 1}, inputs={"run-a": "2"}).done()  # a run retrained: redo
    assert not Commit(out, {"n": 1}, inputs={"run-a": "1", "run-b": "1"}).done()  # a run added
    assert not Commit(out, {"n": 1}, inputs={"run-a": "1"}, overwrite=True).done()
    assert not Commit(out, {"n": 1}).done()  # no inputs given: never done (the caller always computes)
    with pytest.raises(ConfigError, match="different config"):
        Commit(out, {"n": 2}, inputs={"run-a": "1"}).done()
    Commit(out, {"n": 1}, inputs={"run-a": "2"}).write({"weights.json": {"v": 2}})  # redone in place
    assert json.loads((out / "weights.json").read_text()) == {"v": 2}
    assert Commit(out, {"n": 1}, inputs={"run-a": "2"}).done()


def test_a_run_retrained_replaced_or_removed_changes_the_fingerprint(tmp_path):
    import time

    from lorascope.run_folder import RunFolder

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text("{}")
    (tmp_path / "c.partial").mkdir()
    (tmp_path / "c.partial" / "metrics.json").write_text("{}")
    first = RunFolder.fingerprint_under(tmp_path)
    assert sorted(first) == ["a", "b"] and first == RunFolder.fingerprint_under(tmp_path)
    time.sleep(0.01)
    (tmp_path / "a" / "metrics.json").write_text("{}")  # rewritten, same content
    assert RunFolder.fingerprint_under(tmp_path)["a"] != first["a"]
    (tmp_path / "b" / "model").mkdir()
    (tmp_path / "b" / "model" / "model.safetensors").write_bytes(b"x")
    assert RunFolder.fingerprint_under(tmp_path)["b"] != first["b"]


# --- a whole study, killed stage by stage ---------------------------------------------------------

STAGES = ["sanity", "baselines", "train", "drift", "weights", "forgetting", "probes", "bench", "report"]

# Journals: files the study rewrites atomically as it goes, not results of a stage.
JOURNALS = {"config.yaml", "timings.json", ".lock"}


def _study(tmp_path: Path, name: str) -> Path:
    cfg = {
        "name": name, "model": "tiny-llama", "tasks": ["rte", "sst2"], "methods": ["lora", "full"], "seeds": [1],
        "out": str(tmp_path / name), "stages": STAGES,
        "train": {"train_limit": 24, "eval_limit": 16, "epochs": 1, "batch_size": 8, "max_length": 48},
        "sanity": {"samples": 4, "max_epochs": 2, "threshold": 10.0},
        "drift": {"n_samples": 24, "max_length": 48, "bootstrap": 20},
        "forgetting": {"n_texts": 8, "max_length": 32}, "probes": {"n_train": 32, "n_dev": 16, "max_length": 32},
        "bench": {"batch_sizes": [1], "requests": 3, "warmup": 1},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# Runs a study with lorascope.artifacts.write_json replaced, before any stage imports it, by one that
# (on its nth write of the named file inside the given partial folder) writes half the JSON to the
# temporary file and exits at once, as SIGKILL would: no cleanup, no finally blocks.
_KILLING = """
import json, os, sys
import lorascope.artifacts as artifacts
target, name, nth = os.environ["KILL_AT"].split(":")
count = [0]
write_json = artifacts.write_json
def killing_write_json(path, data):
    if str(path).endswith(os.sep + target + ".partial" + os.sep + name):
        count[0] += 1
        if count[0] == int(nth):
            text = json.dumps(data, default=str)
            with open(str(path) + ".tmp", "w") as f:
                f.write(text[: len(text) // 2])
            os._exit(9)
    write_json(path, data)
artifacts.write_json = killing_write_json
from lorascope.cli.main import app
sys.argv = ["lorascope", "study", "run", *sys.argv[1:]]
app()
"""


def _command(path: Path, kill_at: str | None, stages: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``lorascope study run`` of the study file ``path`` (killed at ``kill_at``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"KILL_AT": kill_at} if kill_at else {})}
    study = [str(path), *([f"stages=[{','.join(stages)}]"] if stages else [])]
    args = ["-c", _KILLING, *study] if kill_at else ["-m", "lorascope.cli.main", "study", "run", *study]
    return [sys.executable, *args], env


def _run(path: Path, kill_at: str | None = None, stages: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    args, env = _command(path, kill_at, stages)
    return subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _results(out: Path) -> dict:
    """Every stage's numbers (not its timings: a serving benchmark's latencies differ run to run)."""
    def runs(record: dict) -> list:
        return sorted((r["run"], r["method"], r["seed"], r["summary"]) for r in record["runs"])

    drift = {p.parent.name: _read(p) for p in sorted(out.glob("drift/*/drift.json"))}
    bench = _read(out / "bench" / "bench.json")
    summary = _read(out / "report" / "summary.json")
    return {
        "sanity": _read(out / "sanity" / "sanity.json")["results"],
        "baselines": _read(out / "baselines" / "baselines.json"),
        "train": {p.parent.name: _read(p)["dev"] for p in sorted(out.glob("train/*/metrics.json"))},
        "drift": {t: ([(r["method"], r["seed"], r["mean_drift"]) for r in d["runs"]],
                      json.dumps(d["comparison"], sort_keys=True))
                  for t, d in drift.items()},
        "weights": {p.parent.name: json.dumps(runs(_read(p))) for p in sorted(out.glob("weights/*/weights.json"))},
        "forgetting": {p.parent.name: runs(_read(p)) for p in sorted(out.glob("forgetting/*/forgetting.json"))},
        "probes": {p.parent.name: runs(_read(p)) for p in sorted(out.glob("probes/*/probes.json"))},
        "bench": (sorted(bench["strategies"]), [(c["strategy"], c["passed"]) for c in bench["checks"]]),
        "report": json.dumps(summary["drift"], sort_keys=True),
    }


def _assert_committed(out: Path) -> None:
    """Every file of the study is a journal or lies in a committed result folder (config.yaml and
    provenance.json beside it); nothing in progress or half-written is left."""
    leftovers = [p for p in out.rglob("*") if p.name.endswith((".partial", ".old", ".failed", ".tmp"))]
    assert not leftovers, leftovers
    results = {p.parent for p in out.rglob("provenance.json")}
    for folder in results:
        assert (folder / "config.yaml").is_file(), folder
    for path in (p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out)
        if rel.as_posix() in JOURNALS or path.name == "skipped.json":
            continue
        assert any(folder in path.parents for folder in results), f"{rel}: not inside a committed result folder"
        if path.suffix == ".json":
            _read(path)  # whole, not half-written
    committed = {f.relative_to(out).as_posix() for f in results}
    assert {"sanity", "baselines", "bench", "report", "drift/rte", "weights/rte", "forgetting/rte",
            "probes/rte", "train/rte-lora-s1"} <= committed


# Where each kill lands: the stage, its result folder, the record being written and which write of it.
# (An amendment killed mid-write, the study-wide correction of a task's verdicts, is in test_commit.py:
# one seed per method, as here, leaves the verdicts nothing to correct.)
KILLS = [("sanity", "sanity", "sanity.json", 1), ("baselines", "baselines", "baselines.json", 1),
         ("train", "train/rte-full-s1", "metrics.json", 1), ("drift", "drift/rte", "drift.json", 1),
         ("weights", "weights/sst2", "weights.json", 1),
         ("forgetting", "forgetting/rte", "forgetting.json", 1), ("probes", "probes/rte", "probes.json", 1),
         ("bench", "bench", "bench.json", 1), ("report", "report", "summary.json", 1)]


@pytest.mark.slow
def test_killing_each_stage_mid_write_then_rerunning_gives_the_uninterrupted_results(glue_dir, tmp_path):
    # The uninterrupted study runs beside the killed one (they share nothing but the base model's files);
    # its output goes to a file, which a pipe left unread would not take past a few pages.
    args, env = _command(_study(tmp_path, "whole"), None, None)
    with (tmp_path / "whole.log").open("w") as log:
        uninterrupted = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        _kill_each_stage_then_resume(tmp_path)
    finally:
        returncode = uninterrupted.wait(timeout=900)
    assert returncode == 0, (tmp_path / "whole.log").read_text()[-3000:]
    _assert_committed(tmp_path / "whole")
    assert _results(tmp_path / "killed") == _results(tmp_path / "whole")


def _kill_each_stage_then_resume(tmp_path: Path) -> None:
    """Kill the study ``killed`` once in every stage, mid-write; resume it to the end."""
    killed = _study(tmp_path, "killed")
    out = tmp_path / "killed"
    previous: list[str] = []
    for stage, folder, record, nth in KILLS:
        # Each invocation reruns the stage the last one killed, then is killed in the next: every
        # stage is killed once and resumed once, without redoing the whole study each time.
        run = _run(killed, f"{folder}:{record}:{nth}", stages=[*previous, stage] if previous != [stage] else [stage])
        previous = [stage]
        assert run.returncode == 9, f"{folder}: the kill did not land ({run.returncode}): {run.stderr[-2000:]}"
        assert (out / f"{folder}.partial").is_dir(), folder  # killed inside its partial folder
        assert not (out / folder).exists(), f"{folder}: a half-written result was put in place"
    rerun = _run(killed, stages=previous)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _assert_committed(out)
