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
