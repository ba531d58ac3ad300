"""The drift stage end to end on tiny models, and its refusal to compare misaligned data."""

import csv
import json

import numpy as np
import pytest

from lorascope.drift import DriftConfig, run_drift
from lorascope.drift.analysis import RunDrift, noise_caveat
from lorascope.drift.compare import compare_methods
from lorascope.drift.controls import MisalignedRepresentations, run_controls
from lorascope.drift.record import DriftRecord
from lorascope.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    from tests.helpers import train_tiny_runs

    return train_tiny_runs(tmp_path_factory.mktemp("runs"), "rte", max_length=48)


def _cfg(trained_runs, **kw):
    base = dict(task="rte", base="tiny-llama", runs=str(trained_runs), n_samples=40, max_length=48, bootstrap=200)
    return DriftConfig(**{**base, **kw})


@pytest.mark.slow
def test_drift_end_to_end(glue_dir, trained_runs, tmp_path):
    cfg = _cfg(trained_runs)
    record = run_drift(cfg, tmp_path / "drift")
    assert record == DriftRecord.read(tmp_path / "drift" / "drift.json")  # it returns what it wrote
    assert [c.passed for c in record.controls] == [True, True, True]
    assert record.controls[0].max_drift < 1e-6 and record.controls[2].mean_drift_debiased > 0.5
    result = record.as_json()
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
    # Δ% on the log scale, with the ratio of means beside it; every verdict with raw and Holm-adjusted p.
    assert comp["reduction_scale"] == "geometric mean of per-seed ratios"
    assert comp["reduction_percent"] == pytest.approx(comp["log_ratio"]["reduction_percent"])
    assert comp["reduction_ci_seeds_samples"]["scale"] == "geometric mean of per-seed ratios"
    assert comp["family"]["size"] == 5 and comp["family"]["complete"]
    for v in verdicts.values():  # an undefined test (None p) stays undefined after the correction
        assert v["correction"] == "holm" and (v["p_value"] is None) == (v["p_adjusted"] is None)
        assert v["p_value"] is None or v["p_adjusted"] >= v["p_value"]
    assert verdicts["h1b"]["p_adjusted"] is not None
    assert verdicts["h1b"]["details"]["log_ratio"]["n"] == 2
    # The runs store their per-example dev predictions: H1a's uncertainty covers the dev examples too.
    assert verdicts["h1a"]["uncertainty"] == "seeds and dev examples" and not result["dev_examples_note"]
    assert comp["noise_caveat"]["n"] == 2
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
    assert [r.mean_drift for r in again.runs] == [r["mean_drift"] for r in result["runs"]]


@pytest.mark.slow
def test_changed_settings_or_weights_are_never_served_from_the_cache(glue_dir, trained_runs, tmp_path):
    out = tmp_path / "drift"
    first = run_drift(_cfg(trained_runs, bootstrap=0), out).as_json()
    assert len(first["sample_ids"]) == 40
    with pytest.raises(ConfigError, match="n_samples: stored 40 != current 20"):  # other settings: named, not mixed
        run_drift(_cfg(trained_runs, bootstrap=0, n_samples=20, data_seed=7), out)
    # Overwritten, the folder keeps its representation cache: these states must not be served from it.
    fewer = run_drift(_cfg(trained_runs, bootstrap=0, n_samples=20, data_seed=7), out, overwrite=True).as_json()
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
        again = run_drift(_cfg(trained_runs, bootstrap=0, n_samples=20, data_seed=7), out).as_json()  # same settings: redone
    finally:
        shutil.rmtree(run_dir)
        shutil.copytree(backup, run_dir)
    changed = {(r["method"], r["seed"]): r["mean_drift"] for r in again["runs"]}
    before = {(r["method"], r["seed"]): r["mean_drift"] for r in fewer["runs"]}
    assert changed[("lora", 1)] != before[("lora", 1)]
    assert changed[("full", 1)] == before[("full", 1)]


@pytest.mark.slow
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


@pytest.mark.slow
def test_shuffled_control_fails_when_the_second_extraction_is_not_shuffled(glue_dir, trained_runs, tmp_path, monkeypatch):
    import lorascope.drift.run as drift_run

    real = drift_run.run_represent
    monkeypatch.setattr(drift_run, "run_represent", lambda rc, path, **kw: real(rc.model_copy(update={"order_seed": None}),
                                                                                 path, **kw))
    with pytest.raises(MisalignedRepresentations, match="base_vs_shuffled_base failed"):
        run_drift(_cfg(trained_runs, bootstrap=0), tmp_path / "drift")


@pytest.mark.slow
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


# ---------------------------------------------------------------- the comparison's statistics, on arrays


def _run(method, seed, drift, metric, correct=None):
    return RunDrift(method=method, seed=seed, metric=metric, layers=[{"drift": drift}], mean_drift=drift,
                    mean_drift_ci=(drift, drift), mean_drift_debiased=drift, mean_drift_debiased_ci=(drift, drift),
                    mean_cosine=0.9, n_samples=100, dev_correct=correct)


def _paired_runs(n_seeds=8, n_examples=300, seed=0, with_examples=True):
    rng = np.random.default_rng(seed)
    favour = rng.normal(0, 1.5, n_examples)  # examples that suit one method suit it for every seed
    ease = 1.6 + 1.6 * rng.normal(size=n_examples)
    lora, full = [], []
    for s in range(n_seeds):
        cl = (rng.random(n_examples) < 1 / (1 + np.exp(-(ease + favour)))).astype(float)
        cf = (rng.random(n_examples) < 1 / (1 + np.exp(-ease))).astype(float)
        shared = np.exp(rng.normal(0, 0.9))
        lora.append(_run("lora", s, 0.02 * shared * np.exp(rng.normal(0, 0.3)), cl.mean(), cl if with_examples else None))
        full.append(_run("full", s, 0.04 * shared * np.exp(rng.normal(0, 0.3)), cf.mean(), cf if with_examples else None))
    return lora, full


@pytest.mark.slow
def test_h1a_and_the_metric_difference_carry_the_dev_examples():
    lora, full = _paired_runs()
    comp = compare_methods(lora, full)
    h1a = comp["verdicts"]["h1a"]
    assert h1a["uncertainty"] == "seeds and dev examples" and h1a["details"]["crossed"]["n_examples"] == 300
    metric = comp["metric_difference"]
    both, seeds = metric["seeds_and_examples"], metric["seeds_only"]
    assert both["high"] - both["low"] > seeds["high"] - seeds["low"] and both["var_examples"] > 0
    assert metric["estimate"] == pytest.approx(np.mean([a.metric - b.metric for a, b in zip(lora, full)]))
    assert both["test"]["p_value"] > seeds["test"]["p_value"] or abs(both["test"]["statistic"]) < abs(seeds["test"]["statistic"])
    plain = compare_methods(*_paired_runs(with_examples=False))
    assert plain["verdicts"]["h1a"]["uncertainty"] == "seeds" and plain["metric_difference"]["seeds_and_examples"] is None
    assert "fixed" in plain["metric_difference"]["note"]


@pytest.mark.slow
def test_per_example_predictions_that_do_not_reproduce_the_metric_are_not_used():
    lora, full = _paired_runs()
    lora[0].metric += 0.01  # e.g. predictions of another checkpoint than the reported one
    comp = compare_methods(lora, full)
    assert comp["verdicts"]["h1a"]["uncertainty"] == "seeds" and "do not reproduce" in comp["metric_difference"]["note"]


@pytest.mark.slow
def test_reduction_is_the_geometric_mean_ratio_with_an_asymmetric_interval():
    lora, full = _paired_runs()
    comp = compare_methods(lora, full)
    ratios = np.array([a.mean_drift / b.mean_drift for a, b in zip(lora, full)])
    assert comp["reduction_percent"] == pytest.approx(100 * (1 - np.exp(np.log(ratios).mean())))
    assert comp["reduction_percent_of_means"] == pytest.approx(
        100 * (1 - np.mean([a.mean_drift for a in lora]) / np.mean([b.mean_drift for b in full])))
    ci = comp["reduction_ci_seeds_samples"]
    log_low, log_high = ci["mean_log_ratio_ci"]
    assert ci["low"] < ci["estimate"] < ci["high"] and ci["estimate"] == pytest.approx(comp["reduction_percent"])
    assert (ci["low"], ci["high"]) == pytest.approx((100 * (1 - np.exp(log_high)), 100 * (1 - np.exp(log_low))))
    lower = comp["verdicts"]["lower"]
    assert lower["estimate"] == pytest.approx(comp["reduction_percent"] / 100)
    assert lower["details"]["log_ratio"]["gm_ratio"] == pytest.approx(np.exp(np.log(ratios).mean()))


def test_noise_caveat_uses_the_paired_differences_and_their_number():
    # One seed's sd of drift (0.02) is larger than the mean difference (0.005), yet 8 closely paired seeds
    # show that difference clearly: the old "below one seed's sd" rule would have called it noise.
    base = np.array([0.05, 0.09, 0.07, 0.11, 0.06, 0.10, 0.08, 0.04])
    full = base * 1.07
    lora = base * np.array([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01])
    assert np.std(full, ddof=1) > abs(full.mean() - lora.mean())
    clear = noise_caveat(lora, full)
    assert not clear["applies"] and clear["ci"][1] < 1 and "excludes 1" in clear["text"]
    noisy = noise_caveat(lora * np.exp(np.random.default_rng(0).normal(0, 0.3, 8)), full)
    assert noisy["applies"] and noisy["ci"][0] <= 1 <= noisy["ci"][1] and "could produce" in noisy["text"]
    arithmetic = noise_caveat(np.array([-0.001, 0.01, 0.02]), np.array([0.02, 0.03, 0.05]))
    assert arithmetic["no_difference"] == 0 and arithmetic["scale"] == "mean difference full − LoRA"
    assert noise_caveat(lora[:1], full[:1]) is None


def test_run_records_give_per_example_correctness_only_when_complete_and_aligned():
    from lorascope.drift.run import _aligned_correctness, dev_correctness
    from lorascope.run_folder import RunRecord

    def record(pred, ids=("a", "b", "c", "d"), metric="accuracy"):
        return RunRecord(status="ok", main_metric=metric, dev={"accuracy": 0.5},
                         dev_predictions={"ids": list(ids), "pred": pred, "gold": [1, 0, 1, 0]})

    ids, correct = dev_correctness(record([1, 1, 1, 1]))
    assert ids == ["a", "b", "c", "d"] and correct.tolist() == [1.0, 0.0, 1.0, 0.0]
    # F1 is no mean over examples: its jackknife pseudo-values are, centred on the F1 of all examples.
    _, scores = dev_correctness(record([1, 1, 1, 1], metric="f1"))
    assert scores.mean() == pytest.approx(2 / 3) and scores.std() > 0
    assert dev_correctness(record([1, 1, 1, 1], metric="nonsense")) is None
    assert dev_correctness(RunRecord(status="ok", main_metric="accuracy")) is None
    found, note = _aligned_correctness([record([1, 1, 1, 1]), record([0, 0, 1, 0])])
    assert [f.tolist() for f in found] == [[1, 0, 1, 0], [0, 1, 1, 1]] and note == ""
    found, note = _aligned_correctness([record([1, 1, 1, 1]), record([1, 1, 1, 1], ids="dcba")])
    assert found == [None, None] and "different dev examples" in note
    found, note = _aligned_correctness([record([1, 1, 1, 1]), RunRecord(status="ok", main_metric="accuracy")])
    assert found == [None, None] and "dev_predictions" in note


def test_a_layer_without_spread_counts_as_p_1_in_the_per_layer_family_instead_of_dropping_it():
    """Layer 0 is untouched by both methods (drift 0 for every run: no spread, t undefined). The other three layers
    keep their Holm adjustment over all four layers, and layer 2, where LoRA clearly drifts less, still rejects."""
    from lorascope.drift.compare import _per_layer_tests

    rng = np.random.default_rng(0)

    def run(method, seed, scale):
        drifts = [0.0, *(scale * np.exp(rng.normal(0, 0.1, 3)))]
        return RunDrift(method=method, seed=seed, metric=0.9, layers=[{"drift": float(d)} for d in drifts],
                        mean_drift=float(np.mean(drifts)), mean_drift_ci=(0.0, 1.0), mean_drift_debiased=0.0,
                        mean_drift_debiased_ci=(0.0, 1.0), mean_cosine=0.9, n_samples=100)

    result = _per_layer_tests([run("lora", s, 0.01) for s in range(6)], [run("full", s, 0.05) for s in range(6)], 0.05)
    layers = result["layers"]
    assert layers[0]["p_holm"] is None and layers[0]["reject_holm"] is False
    raw = [row["p_value"] for row in layers[1:]]
    assert all(row["reject_holm"] for row in layers[1:])
    # Holm over 4 layers: the smallest p is multiplied by 4, not by the 3 defined ones.
    assert layers[1 + int(np.argmin(raw))]["p_holm"] == pytest.approx(4 * min(raw))
