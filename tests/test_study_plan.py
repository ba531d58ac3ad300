"""``study plan``: every unit listed, parameters counted without weights, memory and time estimates
against measurements, and what the seeds let the verdicts decide."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lorascope.study import load_study
from tests.conftest import REPO

STAGES = ["sanity", "baselines", "train", "drift", "weights", "forgetting", "probes", "bench", "report"]


def tiny_study(tmp_path: Path, **extra) -> Path:
    cfg = {
        "name": "tiny", "model": "tiny-llama", "tasks": ["rte", "sst2"], "methods": ["lora", "full"], "seeds": [1, 2],
        "out": str(tmp_path / "study"), "stages": STAGES,
        "train": {"train_limit": 24, "eval_limit": 16, "epochs": 1, "batch_size": 8, "max_length": 48},
        "sanity": {"samples": 4, "max_epochs": 2, "threshold": 10.0},
        "drift": {"n_samples": 32, "max_length": 48, "bootstrap": 20},
        "forgetting": {"n_texts": 8, "max_length": 32}, "probes": {"n_train": 32, "n_dev": 16, "max_length": 32},
        "bench": {"batch_sizes": [1], "requests": 4, "warmup": 1}, **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture()
def private_cache(tmp_path, monkeypatch):
    """Calibrations of this test only."""
    import lorascope.study.plan as plan_module

    monkeypatch.setattr(plan_module, "_cache_path", lambda: tmp_path / "calibration.json")


# --- what the seeds can decide --------------------------------------------------------------------

@pytest.mark.parametrize("seeds, tasks, can", [(3, 1, False), (8, 1, True), (8, 3, False), (9, 3, True)])
def test_the_exact_tests_floor_against_the_holm_corrected_alpha(tmp_path, seeds, tasks, can):
    from lorascope.stats.result import TestResult
    from lorascope.stats.verdict import status_of
    from lorascope.study.plan import decidability, decidability_lines

    cfg = load_study(tiny_study(tmp_path, seeds=list(range(seeds)), tasks=["rte", "sst2", "mrpc"][:tasks]), here=False)
    d = decidability(cfg)
    assert d.family_size == 5 * tasks and d.corrected_alpha == pytest.approx(0.05 / (5 * tasks))
    assert d.exact_min_p == 2.0 ** -seeds  # one-sided: 0.125 with 3 seeds, 0.0039 with 8
    assert d.exact_can_decide is can and d.t_can_decide
    # The same decision the verdicts make: a floor above alpha / m is "underpowered" whatever the data.
    floor = TestResult(test="sign-flip", n=seeds, statistic=1.0, p_value=d.exact_min_p, alternative="greater",
                       min_attainable_p=d.exact_min_p)
    assert (status_of(floor, 0.0, 1.0, 0.05, d.corrected_alpha, True) == "underpowered") is not can
    text = " ".join(decidability_lines(d))
    assert ("CANNOT decide" in text) is not can
    assert d.exact_seeds_needed == {1: 7, 3: 9}[tasks]


def test_the_paper_profile_has_the_seeds_to_decide():
    from lorascope.study.plan import decidability

    d = decidability(load_study(REPO / "configs" / "studies" / "paper.yaml", here=False))
    assert d.family_size == 15 and d.exact_can_decide and d.seeds == d.exact_seeds_needed == 9


# --- parameters without weights -------------------------------------------------------------------

@pytest.mark.parametrize("method", ["lora", "full"])
def test_meta_counts_equal_the_loaded_models(method):
    from lorascope.models import load_classifier, prepare_for_method
    from lorascope.study.plan import meta_shape, model_config
    from lorascope.train import TrainConfig

    train = TrainConfig(task="rte", model="tiny-llama", method=method, max_length=32)
    config, _, note = model_config("tiny-llama", 2)
    shape = meta_shape(config, train, bf16=False, checkpointing=False)
    _, counts = prepare_for_method(load_classifier("tiny-llama", ("a", "b"), seed=0).model, method)
    assert (shape.total, shape.trainable) == (counts.total, counts.trainable) and note == ""
    assert shape.activations_per_sample and shape.activations_per_sample > 0


def test_a_model_without_its_config_offline_is_unknown(monkeypatch):
    from lorascope.study.plan import model_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config, _, note = model_config("nobody-has/this-model", 2)
    assert config is None and note.startswith("unknown (config not available offline")
    config, _, note = model_config("tinyllama", 2)  # the alias has TinyLlama-1.1B's shapes when not cached
    assert config.num_hidden_layers == 22 and config.hidden_size == 2048


# --- every unit is listed --------------------------------------------------------------------------

@pytest.mark.slow
def test_the_plan_lists_every_unit_and_what_is_done(glue_dir, tmp_path, private_cache):
    from typer.testing import CliRunner

    from lorascope.cli.main import app
    from lorascope.study.plan import plan_study
    from lorascope.study.units import train_units

    path = tiny_study(tmp_path)
    cfg = load_study(path, here=False)
    plan = plan_study(cfg, calibrate_here=False)
    names = [u.name for u in plan.units]
    expected = ([f"sanity {t}-{m}" for t in cfg.tasks for m in cfg.methods] + ["baselines"]
                + [u.name for u in train_units(cfg)]
                + [f"{stage} {t}" for t in cfg.tasks for stage in ("drift", "weights", "forgetting", "probes")]
                + ["bench", "report"])
    assert sorted(names) == sorted(expected)
    train = [u for u in plan.units if u.stage == "train"]
    assert all(u.total_params and u.memory and u.seconds and not u.done for u in train)
    assert {u.trainable_params < u.total_params for u in train if u.method == "lora"} == {True}
    # A finished run in the folder is reported done; the rest still counts.
    folder = train_units(cfg)[0].folder(Path(cfg.out))
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": "ok"}))
    again = plan_study(cfg, calibrate_here=False)
    assert [u.name for u in again.units if u.done] == [train_units(cfg)[0].name]
    assert again.remaining_seconds < again.total_seconds
    # An analysis is done as its stage will find it: computed from these runs, none still to train.
    from lorascope.artifacts import write_json
    from lorascope.run_folder import RunFolder
    from lorascope.study.layout import StudyLayout

    layout, task = StudyLayout(Path(cfg.out)), cfg.tasks[0]
    layout.drift(task).mkdir(parents=True)
    write_json(layout.drift(task) / "drift.json", {})

    def drift_done() -> bool:
        write_json(layout.drift(task) / "inputs.json", RunFolder.fingerprint_under(layout.train))
        return next(u for u in plan_study(cfg, calibrate_here=False).units if u.name == f"drift {task}").done

    assert not drift_done()  # runs of its task still to train
    for unit in train_units(cfg):
        unit.folder(Path(cfg.out)).mkdir(parents=True, exist_ok=True)
        (unit.folder(Path(cfg.out)) / "metrics.json").write_text(json.dumps({"status": "ok"}))
    assert drift_done()
    (folder / "metrics.json").write_text(json.dumps({"status": "ok", "retrained": True}))
    assert next(u for u in plan_study(cfg, calibrate_here=False).units if u.name == f"drift {task}").done is False
    result = CliRunner().invoke(app, ["study", "plan", str(path), "--no-calibrate"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in expected:
        assert name in result.output
    assert "exact sign-flip test, 2 seed pairs: smallest one-sided p 2^-2 = 0.25 > 0.005: CANNOT decide" in result.output
    data = json.loads(CliRunner().invoke(app, ["study", "plan", str(path), "--no-calibrate", "--json"]).stdout)
    assert len(data["units"]) == len(expected) and data["decidability"]["exact_seeds_needed"] == 8


# --- estimates against measurements ----------------------------------------------------------------

# Trains in a fresh process, so that the baseline is that process's memory before training: the peak
# resident set (VmHWM, reset by /proc/self/clear_refs) less the resident set just before.
_MEASURE = """
import json, sys
import psutil
from lorascope.cli.common import quiet_libraries
quiet_libraries()
from lorascope.data import get_task, load_split
from lorascope.train import TrainConfig
from lorascope.train.run import run_train
cfg = TrainConfig.model_validate_json(sys.argv[1])
load_split(get_task(cfg.task), "train")  # the data library's first use, outside the measured span
before = psutil.Process().memory_info().rss
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
run_train(cfg, sys.argv[2], progress=False)
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"increase": peak - before}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
@pytest.mark.parametrize("method", ["full", "lora"])
def test_the_memory_estimate_is_within_25_percent_of_the_measured_peak(glue_dir, tmp_path, method):
    from lorascope.study.plan import meta_shape, model_config, training_memory
    from lorascope.train import TrainConfig

    # Every batch padded to max_length: the estimate is for batch_size × max_length.
    train = TrainConfig(task="rte", model="minilm", method=method, seed=1, train_limit=64, eval_limit=16, epochs=1,
                        batch_size=16, eval_batch_size=16, max_length=128, pad_to_max_length=True, save_model=False)
    config, _, _ = model_config("minilm", 2)
    estimate = training_memory(meta_shape(config, train, bf16=False, checkpointing=False), train, bf16=False,
                               cuda=False).peak
    out = subprocess.run([sys.executable, "-c", _MEASURE, train.model_dump_json(), str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])["increase"]
    assert abs(estimate - measured) <= 0.25 * measured, f"estimate {estimate / 2**20:.0f} MiB, measured {measured / 2**20:.0f} MiB"


@pytest.mark.slow
def test_the_time_estimate_is_within_a_factor_of_2_of_a_tiny_study(glue_dir, tmp_path, private_cache):
    from lorascope.study import run_study
    from lorascope.study.plan import forget_calibration, plan_study

    # The estimate is for the machine as it was when calibrated: on shared cores a calibration (or a
    # run) can meet a burst of other work. Each attempt calibrates afresh and runs into a new folder;
    # a systematic error in the estimate fails both.
    seen = []
    for attempt in range(2):
        forget_calibration()
        folder = tmp_path / f"attempt-{attempt}"
        folder.mkdir()
        cfg = load_study(tiny_study(folder, tasks=["rte"], stages=["train"]))
        plan = plan_study(cfg)  # calibrates tiny-llama's two methods here
        assert {u.basis for u in plan.units} == {"calibrated on this cpu"}
        started = time.perf_counter()
        run_study(cfg)
        measured = time.perf_counter() - started
        seen.append(f"estimate {plan.total_seconds:.1f} s, measured {measured:.1f} s")
        if measured / 2 <= plan.total_seconds <= measured * 2:
            return
    pytest.fail("; ".join(seen))


def test_recalibrating_forgets_this_machines_timings_only(private_cache):
    from lorascope.study.plan import _read_cache, _write_cache, device_name, forget_calibration

    here = device_name()
    _write_cache({f"matmul|{here}": 1.0, f"run|{here}|{{}}": {"seconds_per_token": 9.0}, "matmul|cuda:H100": 2.0})
    forget_calibration()
    assert {k for k in _read_cache() if k != "version"} == {"matmul|cuda:H100"}
