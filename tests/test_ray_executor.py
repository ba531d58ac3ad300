"""The study's units as Ray tasks on a local Ray (2 CPUs): the same results as the local executor,
and a Ray worker killed mid-training costs nothing but time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray", reason="the Ray executor's tests need Ray (pip install 'ray>=2.40')")

# Starts Ray and trains for real: the slow tier.
pytestmark = pytest.mark.slow

RAY = {"kind": "ray", "local_cpus": 2, "cpus_per_unit": 1}


def study_file(tmp_path: Path, name: str, executor: dict) -> Path:
    cfg = {
        "name": name, "model": "tiny-llama", "tasks": ["rte"], "methods": ["lora", "full"], "seeds": [1],
        "out": str(tmp_path / name), "stages": ["sanity", "train", "drift", "weights"], "executor": executor,
        # Several checkpoints per unit, so that a kill lands mid-unit.
        "train": {"train_limit": 48, "eval_limit": 16, "epochs": 2, "evals_per_epoch": 2, "batch_size": 8,
                  "max_length": 48, "patience": 0},
        "method_train": {"lora": {"lr": 5e-3}, "full": {"lr": 1e-3}},
        "sanity": {"samples": 4, "max_epochs": 2, "threshold": 10.0},
        "drift": {"n_samples": 24, "max_length": 48, "bootstrap": 50},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def results(out: Path) -> dict:
    runs = {p.parent.name: json.loads(p.read_text()) for p in sorted((out / "train").glob("*/metrics.json"))}
    drift = json.loads((out / "drift" / "rte" / "drift.json").read_text())
    weights = json.loads((out / "weights" / "rte" / "weights.json").read_text())
    sanity = json.loads((out / "sanity" / "sanity.json").read_text())["results"]
    return {
        "sanity": [(r["task"], r["method"], r["final_loss"]) for r in sanity],
        "dev": {k: v["dev"] for k, v in runs.items()},
        "curves": {k: v["train_loss_curve"] for k, v in runs.items()},
        "drift": sorted((r["method"], r["seed"], r["mean_drift"], r["mean_drift_debiased"]) for r in drift["runs"]),
        "weights": sorted((r["run"], r["summary"]["relative_update"]) for r in weights["runs"]),
    }


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The study on the local executor, one torch thread per unit as each Ray task uses."""
    from lorascope.study import load_study, run_study

    tmp = tmp_path_factory.mktemp("local")
    return results(run_study(load_study(study_file(tmp, "local", {"kind": "local", "cpus_per_unit": 1}))))


def test_ray_executor_gives_the_local_executors_results(glue_dir, tmp_path, local_reference):
    from rich.console import Console

    from lorascope.study import load_study, run_study

    console = Console(record=True, width=200)
    out = run_study(load_study(study_file(tmp_path, "ray", RAY)), console=console)
    assert results(out) == local_reference
    printed = console.export_text()
    # Each freshly trained unit says which worker (host:pid) ran it: a Ray worker, not this process.
    # A unit's line ends "(<seconds> s on <worker>, ETA …)"; other stages' lines may say "on" too.
    workers = [m.group(1) for m in re.finditer(r"\(\d+ s on ([^,]+), ETA", printed)]
    assert len(workers) == 2, printed
    assert all(int(w.rsplit(":", 1)[1]) != os.getpid() for w in workers), printed
    # Rerun: every unit is found done, on Ray as locally.
    again = Console(record=True, width=200)
    run_study(load_study(study_file(tmp_path, "ray", RAY)), console=again)
    rerun = again.export_text()  # export_text() empties the record: read it once
    assert rerun.count("(done earlier") == 2 and "sanity: done earlier" in rerun


def _ray_unit_workers() -> list:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if cmdline.startswith("ray::_call"):
            found.append(proc)
    return found


def test_a_ray_worker_killed_mid_training_is_rerun_with_the_same_results(glue_dir, tmp_path, local_reference):
    path = study_file(tmp_path, "killed", RAY)
    proc = subprocess.Popen([sys.executable, "-m", "lorascope.cli.main", "study", "run", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    train = tmp_path / "killed" / "train"
    deadline = time.monotonic() + 600
    # Wait until a unit has written a checkpoint and is still training, then kill its worker without warning.
    while not list(train.glob("*.partial/checkpoints/checkpoint-*")) or not _ray_unit_workers():
        assert proc.poll() is None, f"the study ended before a worker could be killed:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "no unit wrote a checkpoint in 10 minutes"
        time.sleep(0.05)
    victims = _ray_unit_workers()
    for victim in victims:
        os.kill(victim.pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output
    assert results(tmp_path / "killed") == local_reference
    assert victims


def test_the_address_probe_accepts_a_live_ray():
    """The check that refuses a dead address lets a live Ray's GCS through (no false refusal)."""
    import ray

    from lorascope.study.executor import ExecutorSettings, check_executor

    assert not ray.is_initialized()
    ray.init(num_cpus=1, object_store_memory=128 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        check_executor(ExecutorSettings(kind="ray", address=address), timeout_s=10)
    finally:
        ray.shutdown()
