"""The drift stage end to end on tiny models, and its refusal to compare misaligned data."""

import csv
import json

import numpy as np
import pytest

from lorascope.drift import DriftConfig, run_drift
from lorascope.drift.controls import MisalignedRepresentations, run_controls
from lorascope.errors import DataError
from lorascope.train import TrainConfig, run_train


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    import os

    from tests.conftest import GLUE_DIR

    os.environ["GLUE_DIR"] = str(GLUE_DIR)
    root = tmp_path_factory.mktemp("runs")
    for method in ("lora", "full"):
        for seed in (1, 2):
            cfg = TrainConfig(task="rte", method=method, model="tiny-llama", seed=seed, train_limit=24, eval_limit=16,
                              epochs=1, batch_size=8, max_length=48, lr=5e-3 if method == "lora" else 1e-3)
            assert run_train(cfg, root / f"rte-{method}-s{seed}")["status"] == "ok"
    return root


def test_drift_end_to_end(glue_dir, trained_runs, tmp_path):
    cfg = DriftConfig(task="rte", base="tiny-llama", runs=str(trained_runs), n_samples=40, max_length=48, bootstrap=200)
    result = run_drift(cfg, tmp_path / "drift")
    assert [c["passed"] for c in result["controls"]] == [True, True, True]
    assert result["n_samples"] == 40 and result["n_layers"] == 3
    assert {(r["method"], r["seed"]) for r in result["runs"]} == {("lora", 1), ("lora", 2), ("full", 1), ("full", 2)}
    for r in result["runs"]:
        assert 0 < r["mean_drift"] < 1
        lo, hi = r["mean_drift_ci"]
        assert lo <= r["mean_drift"] <= hi and hi - lo < 0.5
        assert r["layers"][0]["drift"] < 1e-9 or r["method"] == "full"  # LoRA on q/v leaves embeddings untouched
    comp = result["comparison"]
    assert comp["n_pairs"] == 2 and comp["sign_flip"]["min_attainable_p"] == pytest.approx(0.5)
    assert comp["h1b"]["status"] == "underpowered"  # 2 seed pairs can never reach alpha = 0.05
    assert result["noise_floor"]["lora"]["pairs"][0]["seeds"] == [1, 2]
    rows = list(csv.DictReader((tmp_path / "drift" / "layers.csv").open()))
    assert len(rows) == 4 * 3 and set(rows[0]) >= {"task", "method", "seed", "layer", "cka", "cka_debiased", "cosine",
                                                   "drift", "ci_low", "ci_high"}
    stored = json.loads((tmp_path / "drift" / "drift.json").read_text())
    assert stored["sample_ids"] == result["sample_ids"]
    # A second run reuses the stored representations and reproduces the numbers exactly.
    stamp = (tmp_path / "drift" / "reps" / "base.safetensors").stat().st_mtime_ns
    again = run_drift(cfg, tmp_path / "drift")
    assert (tmp_path / "drift" / "reps" / "base.safetensors").stat().st_mtime_ns == stamp
    assert [r["mean_drift"] for r in again["runs"]] == [r["mean_drift"] for r in result["runs"]]


def test_controls_catch_misalignment():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 30, 8))
    controls = run_controls(base, base.copy())
    assert controls[2]["passed"] if isinstance(controls[2], dict) else controls[2].passed
    with pytest.raises(MisalignedRepresentations, match="misaligned"):
        run_controls(base, base[:, ::-1].copy())


def test_no_runs_is_a_clear_error(glue_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no finished 'rte' training runs"):
        run_drift(DriftConfig(task="rte", base="tiny-llama", runs=str(tmp_path / "empty")), tmp_path / "o")
