"""The drift stage end to end on tiny models, and its refusal to compare misaligned data."""

import csv
import json

import numpy as np
import pytest

from lorascope.drift import DriftConfig, run_drift
from lorascope.drift.controls import MisalignedRepresentations, run_controls
from lorascope.errors import DataError


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    from tests.helpers import train_tiny_runs

    return train_tiny_runs(tmp_path_factory.mktemp("runs"), "rte", max_length=48)


def _cfg(trained_runs, **kw):
    base = dict(task="rte", base="tiny-llama", runs=str(trained_runs), n_samples=40, max_length=48, bootstrap=200)
    return DriftConfig(**{**base, **kw})


def test_drift_end_to_end(glue_dir, trained_runs, tmp_path):
    cfg = _cfg(trained_runs)
    result = run_drift(cfg, tmp_path / "drift")
    assert [c["passed"] for c in result["controls"]] == [True, True, True]
    assert result["controls"][0]["max_drift"] < 1e-6 and result["controls"][2]["mean_drift_debiased"] > 0.5
    assert result["n_samples"] == 40 and result["n_layers"] == 3
    assert {(r["method"], r["seed"]) for r in result["runs"]} == {("lora", 1), ("lora", 2), ("full", 1), ("full", 2)}
    for r in result["runs"]:
        assert 0 < r["mean_drift"] < 1
        lo, hi = r["mean_drift_ci"]
        assert lo <= r["mean_drift"] <= hi and hi - lo < 0.5
        assert r["layers"][0]["drift"] < 1e-9 or r["method"] == "full"  # LoRA on q/v leaves embeddings untouched
    comp = result["comparison"]
    assert comp["n_pairs"] == 2 and comp["sign_flip"]["min_attainable_p"] == pytest.approx(0.5)
    verdicts = comp["verdicts"]
    assert set(verdicts) == {"h1a", "h1b", "h1b_debiased", "lower", "lower_debiased"}
    assert verdicts["h1b"]["test"]["test"].startswith("paired t-test")  # the protocol's primary test
    assert verdicts["h1b"]["secondary_status"] == "underpowered"  # 2 pairs: the exact test can never reach 0.05
    low, high = comp["reduction_ci_seeds_samples"]["low"], comp["reduction_ci_seeds_samples"]["high"]
    assert low < comp["reduction_percent"] < high
    floor = result["noise_floor"]["lora"]
    drifts = [r["mean_drift"] for r in result["runs"] if r["method"] == "lora"]
    assert floor["sd"] == pytest.approx(np.std(drifts, ddof=1)) and floor["sd_ci"][0] < floor["sd"] < floor["sd_ci"][1]
    assert result["between_seed_drift"]["lora"]["pairs"][0]["seeds"] == [1, 2]
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


def test_changed_settings_or_weights_are_never_served_from_the_cache(glue_dir, trained_runs, tmp_path):
    out = tmp_path / "drift"
    first = run_drift(_cfg(trained_runs, bootstrap=0), out)
    assert len(first["sample_ids"]) == 40
    fewer = run_drift(_cfg(trained_runs, bootstrap=0, n_samples=20, data_seed=7), out)
    assert len(fewer["sample_ids"]) == 20 and fewer["n_samples"] == 20
    assert set(fewer["sample_ids"]) != set(first["sample_ids"][:20])
    # Retrain one run in place (other weights, same folder name): its stored states must not be reused.
    import shutil

    run_dir = trained_runs / "rte-lora-s1"
    backup = tmp_path / "backup"
    shutil.copytree(run_dir, backup)
    try:
        from safetensors.torch import load_file, save_file

        weights = run_dir / "adapter" / "adapter_model.safetensors"
        tensors = load_file(str(weights))
        save_file({k: v * 1.5 if "lora_B" in k else v for k, v in tensors.items()}, str(weights))
        again = run_drift(_cfg(trained_runs, bootstrap=0, n_samples=20, data_seed=7), out)
    finally:
        shutil.rmtree(run_dir)
        shutil.copytree(backup, run_dir)
    changed = {(r["method"], r["seed"]): r["mean_drift"] for r in again["runs"]}
    before = {(r["method"], r["seed"]): r["mean_drift"] for r in fewer["runs"]}
    assert changed[("lora", 1)] != before[("lora", 1)]
    assert changed[("full", 1)] == before[("full", 1)]


def test_base_vs_base_control_fails_when_ids_are_shuffled_after_extraction(glue_dir, trained_runs, tmp_path, monkeypatch):
    import lorascope.drift.run as drift_run

    real = drift_run.run_represent

    def shuffled_ids(rc, path, **kw):
        reps = real(rc, path, **kw)
        if rc.order_seed is not None:  # the second base extraction: ids no longer match their rows
            reps.ids = list(np.random.default_rng(0).permutation(reps.ids))
        return reps

    monkeypatch.setattr(drift_run, "run_represent", shuffled_ids)
    with pytest.raises(MisalignedRepresentations, match="base_vs_base failed"):
        run_drift(_cfg(trained_runs, bootstrap=0), tmp_path / "drift")


def test_shuffled_control_fails_when_the_second_extraction_is_not_shuffled(glue_dir, trained_runs, tmp_path, monkeypatch):
    import lorascope.drift.run as drift_run

    real = drift_run.run_represent
    monkeypatch.setattr(drift_run, "run_represent", lambda rc, path, **kw: real(rc.model_copy(update={"order_seed": None}),
                                                                                 path, **kw))
    with pytest.raises(MisalignedRepresentations, match="base_vs_shuffled_base failed"):
        run_drift(_cfg(trained_runs, bootstrap=0), tmp_path / "drift")


def test_lora_init_control_fails_when_b_is_not_zero(glue_dir, trained_runs, tmp_path, monkeypatch):
    import lorascope.represent.run as represent_run

    real = represent_run.prepare_for_method

    def nonzero_b(model, method, **kw):
        model, counts = real(model, method, **kw)
        import torch

        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
        return model, counts

    monkeypatch.setattr(represent_run, "prepare_for_method", nonzero_b)
    with pytest.raises(MisalignedRepresentations, match="base_vs_lora_init failed"):
        run_drift(_cfg(trained_runs, bootstrap=0), tmp_path / "drift")


def test_controls_on_arrays():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 30, 8))
    shuffled = base[:, rng.permutation(30)]
    controls = run_controls(base, base.copy(), shuffled, base.copy())
    assert [c.passed for c in controls] == [True, True, True]
    with pytest.raises(MisalignedRepresentations, match="base_vs_base"):
        run_controls(base, base[:, ::-1].copy(), shuffled, base.copy())
    with pytest.raises(MisalignedRepresentations, match="base_vs_shuffled_base"):
        run_controls(base, base.copy(), base.copy(), base.copy())


def test_no_runs_is_a_clear_error(glue_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no finished 'rte' training runs"):
        run_drift(DriftConfig(task="rte", base="tiny-llama", runs=str(tmp_path / "empty")), tmp_path / "o")
