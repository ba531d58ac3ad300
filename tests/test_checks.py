"""The protocol's sanity check: both methods memorise 10 examples; a failure is reported, not raised."""

import pytest

from lorascope.checks.sanity import run_sanity_one
from lorascope.train import TrainConfig


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "full"])
def test_minilm_overfits_ten_examples(glue_dir, method):
    r = run_sanity_one(TrainConfig(task="rte", method=method, model="minilm", max_length=128), progress=False)
    assert r.passed, f"{method}: training loss {r.final_loss:.3f} after {r.epochs_run} epochs"
    assert r.final_loss < 0.1 and 1 <= r.epochs_run <= 10


def test_unreachable_threshold_fails_cleanly(glue_dir):
    r = run_sanity_one(TrainConfig(task="sst2", method="lora", model="tiny-llama", max_length=32),
                       max_epochs=2, threshold=1e-9, progress=False)
    assert not r.passed and r.epochs_run == 2 and r.final_loss > 1e-9 and r.reason is None


def test_baselines_on_the_runs_dev_subset(glue_dir):
    import numpy as np

    from lorascope.checks.baselines import run_baselines
    from lorascope.data import get_task, load_split, subsample

    (sub,) = run_baselines(["mrpc"], eval_limits={"mrpc": 100}, data_seed=3, draws=10)
    gold = np.asarray(subsample(load_split(get_task("mrpc"), "validation"), 100, 3)["label"])
    assert sub.n_dev == 100
    assert sub.majority["accuracy"] == pytest.approx(float((gold == 1).mean()))  # "equivalent" is the majority


# --- Why a run did not learn, on its metric's own scale. ---


def test_learning_check_says_below_the_majority_baseline_and_by_how_much():
    from lorascope.train.learned import learning_check

    # Matthews correlation on −1..1, never a percentage; below the baseline is said, with the gap.
    check = learning_check("matthews", -0.215, 0.0, 0.9)
    assert not check["learned"] and check["metric"] == "matthews"
    assert check["reasons"] == ["dev MCC -0.215 is below the majority baseline (0.000) by 0.215"]
    assert learning_check("matthews", 0.0, 0.0, 1.0)["reasons"] == [
        "every dev prediction is the same label", "dev MCC 0.000 is at the majority baseline (0.000)"]
    # Shares as percentages, gaps in points; above the baseline by less than the margin names the margin.
    assert learning_check("accuracy", 0.50, 0.53, 0.8)["reasons"] == [
        "dev accuracy 50.0% is below the majority baseline (53.0%) by 3.0 points"]
    assert learning_check("f1", 0.536, 0.53, 0.8)["reasons"] == [
        "dev F1 53.6% is 0.6 points above the majority baseline (53.0%), less than the 2.0-point margin"]
    learned = learning_check("matthews", 0.30, 0.0, 0.7)
    assert learned["learned"] and learned["reasons"] == []
    assert not any("not 2 points above" in r for c in (check, learned) for r in c["reasons"])


def _run_drift(method: str, seed: int, metric: float, learning: dict):
    from lorascope.drift.analysis import RunDrift

    return RunDrift(method=method, seed=seed, metric=metric, layers=[], mean_drift=0.1, mean_drift_ci=(0.0, 0.2),
                    mean_drift_debiased=0.1, mean_drift_debiased_ci=(0.0, 0.2), mean_cosine=0.9, n_samples=8,
                    learning=learning)


def test_drift_caveat_says_a_method_is_below_the_majority_baseline_on_its_metrics_scale():
    from lorascope.drift.compare import learning_caveats
    from lorascope.train.learned import learning_check

    lora = [_run_drift("lora", s, v, learning_check("matthews", v, 0.0, 0.8)) for s, v in ((1, -0.2), (2, -0.23))]
    full = [_run_drift("full", s, v, learning_check("matthews", v, 0.0, 0.8)) for s, v in ((1, 0.3), (2, 0.4))]
    caveats = learning_caveats(lora, full)
    assert caveats["runs_not_learned"] == ["lora seed 1", "lora seed 2"]
    text = caveats["not_interpretable"]
    assert "LoRA's mean dev MCC -0.215 is below the majority baseline (0.000) by 0.215" in text
    assert "full fine-tuning" not in text and "%" not in text and "not 2 points above" not in text
    # A record written before the check named its metric is read as a share, as it was written then.
    old = {k: v for k, v in learning_check("accuracy", 0.5, 0.53, 0.8).items() if k != "metric"}
    caveats = learning_caveats([_run_drift("lora", 1, 0.5, old)], [_run_drift("full", 1, 0.8, None)])
    assert "LoRA's mean dev metric 50.0% is below the majority baseline (53.0%) by 3.0 points" in caveats["not_interpretable"]
