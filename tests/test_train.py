"""Both methods train, save loadable artifacts, reproduce, and fail cleanly."""

import json

import pytest
import torch

from lorascope.train import TrainConfig, prepare_run, run_train
from lorascope.models import load_run
from tests.helpers import logits_of

SMALL = dict(task="mrpc", train_limit=32, eval_limit=16, epochs=2, batch_size=8, max_length=64, logging_steps=2)


def _eval_loss(loaded, ds) -> float:
    logits = logits_of(loaded.model, loaded.tokenizer, ds)
    labels = torch.tensor(list(ds["labels"]))
    return float(torch.nn.functional.cross_entropy(logits, labels))


@pytest.mark.parametrize("model", ["tiny-llama", "minilm"])
@pytest.mark.parametrize("method", ["lora", "full"])
def test_train_save_reload(glue_dir, tmp_path, model, method):
    cfg = TrainConfig(model=model, method=method, **SMALL)
    out = tmp_path / "run"
    m = run_train(cfg, out)
    assert m["status"] == "ok" and m["n_train"] == 32 and m["n_eval"] == 16
    assert set(m["dev"]) == {"loss", "f1", "accuracy"}
    assert m["epochs_trained"] == 2 and m["best_epoch"] in (1.0, 2.0)
    assert m["tokens_processed"] >= m["tokens_real"] > 0
    counts = m["parameters"]
    if method == "lora":
        assert counts["trainable"] < 0.05 * counts["total"]
        assert (out / "adapter" / "adapter_model.safetensors").is_file()
        assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 8
    else:
        assert counts["trainable"] == counts["total"]
        assert (out / "model" / "model.safetensors").is_file()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))
    assert not (tmp_path / "run.partial").exists() and not (out / "checkpoints").exists()
    for name in ("config.yaml", "provenance.json"):
        assert (out / name).is_file()
    # The reloaded artifact is the restored best model: it reproduces the recorded dev loss.
    reloaded = load_run(out)
    eval_ds = prepare_run(cfg).eval_ds
    assert _eval_loss(reloaded, eval_ds) == pytest.approx(m["dev"]["loss"], abs=1e-5)


def test_same_seed_same_metrics_and_different_seed_differs(glue_dir, tmp_path):
    runs = [run_train(TrainConfig(model="tiny-llama", seed=s, save_model=False, **SMALL), tmp_path / f"r{i}")
            for i, s in enumerate([7, 7, 8])]
    keys = ("dev", "train_loss", "train_loss_curve", "eval_curve")
    assert all(runs[0][k] == runs[1][k] for k in keys)
    assert runs[0]["train_loss_curve"] != runs[2]["train_loss_curve"]


def test_finished_run_is_reused_and_config_mismatch_is_an_error(glue_dir, tmp_path):
    from lorascope.errors import ConfigError

    cfg = TrainConfig(model="tiny-llama", save_model=False, **SMALL)
    first = run_train(cfg, tmp_path / "r")
    stamp = (tmp_path / "r" / "metrics.json").stat().st_mtime_ns
    assert run_train(cfg, tmp_path / "r") == first
    assert (tmp_path / "r" / "metrics.json").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match=r"lr: stored 0.002 != current 0.001"):
        run_train(cfg.model_copy(update={"lr": 1e-3}), tmp_path / "r")


def test_divergence_is_recorded_not_raised(glue_dir, tmp_path):
    cfg = TrainConfig(model="tiny-llama", method="full", lr=1e12, max_grad_norm=1e12, **SMALL)
    m = run_train(cfg, tmp_path / "r")
    assert m["status"] == "failed"
    assert "became nan" in m["reason"] or "became inf" in m["reason"]
    assert not (tmp_path / "r" / "model").exists()


def test_resume_skips_a_checkpoint_cut_off_mid_save(glue_dir, tmp_path):
    from lorascope.artifacts import start_partial
    from lorascope.config import config_to_dict
    from lorascope.train.resume import last_complete_checkpoint

    cfg = TrainConfig(model="tiny-llama", save_model=False, **SMALL)
    clean = run_train(cfg, tmp_path / "clean")
    # A kill during the Trainer's save: the folder exists, its trainer_state.json is truncated.
    checkpoints = start_partial(tmp_path / "cut", config_to_dict(cfg)) / "checkpoints"
    (checkpoints / "checkpoint-2").mkdir(parents=True)
    (checkpoints / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2, "log_hi')
    assert last_complete_checkpoint(checkpoints) is None
    assert not (checkpoints / "checkpoint-2").exists()
    (checkpoints / "checkpoint-4").mkdir()
    resumed = run_train(cfg, tmp_path / "cut")
    assert resumed["status"] == "ok" and resumed["dev"] == clean["dev"]


def test_last_complete_checkpoint_prefers_the_newest_complete_one(tmp_path):
    from lorascope.train.resume import last_complete_checkpoint

    for step, state in ((5, '{"global_step": 5}'), (10, '{"global_step": 10}'), (15, '{"glob')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-20").mkdir()  # cut off before trainer_state.json was written
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-5"]


def test_group_by_length_cuts_padding(glue_dir, tmp_path):
    cfg = TrainConfig(model="tiny-llama", task="rte", train_limit=64, eval_limit=8, epochs=1, batch_size=8,
                      max_length=128, save_model=False, patience=0)
    grouped = run_train(cfg, tmp_path / "grouped")
    shuffled = run_train(cfg.model_copy(update={"group_by_length": False}), tmp_path / "shuffled")
    assert grouped["tokens_real"] == shuffled["tokens_real"]
    # RTE premises vary from a few to 100+ tokens: random batches carry far more padding.
    waste = {name: m["tokens_processed"] / m["tokens_real"] - 1 for name, m in (("g", grouped), ("s", shuffled))}
    assert waste["g"] < 0.5 * waste["s"], waste
