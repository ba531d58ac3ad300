"""Both methods train, save loadable artifacts, reproduce, and fail cleanly."""

import json

import pytest
import torch

from lorascope.models import load_run
from lorascope.train import TrainConfig, prepare_run, run_train
from tests.helpers import logits_of

SMALL = dict(task="mrpc", train_limit=32, eval_limit=16, epochs=2, batch_size=8, max_length=64, logging_steps=2)


def _eval_loss(loaded, ds) -> float:
    logits = logits_of(loaded.model, loaded.tokenizer, ds)
    labels = torch.tensor(list(ds["labels"]))
    return float(torch.nn.functional.cross_entropy(logits, labels))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-llama", "minilm"])
@pytest.mark.parametrize("method", ["lora", "full"])
def test_train_save_reload(glue_dir, tmp_path, model, method):
    cfg = TrainConfig(model=model, method=method, **SMALL)
    out = tmp_path / "run"
    m = run_train(cfg, out)
    assert m.status == "ok" and m.n_train == 32 and m.n_eval == 16
    assert set(m.dev) == {"loss", "f1", "accuracy"}
    assert m.epochs_trained == 2 and m.best_epoch in (1.0, 2.0)
    assert m.tokens_processed >= m.tokens_real > 0
    counts = m.parameters
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
    assert _eval_loss(reloaded, eval_ds) == pytest.approx(m.dev["loss"], abs=1e-5)
    # Per-example dev predictions of that model, in dev order: they reproduce the recorded accuracy.
    preds = m.model_extra["dev_predictions"]
    assert preds["ids"] == [str(i) for i in eval_ds["id"]] and preds["gold"] == list(eval_ds["labels"])
    assert preds["pred"] == logits_of(reloaded.model, reloaded.tokenizer, eval_ds).argmax(-1).tolist()
    assert sum(p == g for p, g in zip(preds["pred"], preds["gold"])) / 16 == pytest.approx(m.dev["accuracy"])


@pytest.mark.slow
def test_same_seed_same_metrics_and_different_seed_differs(glue_dir, tmp_path):
    runs = [run_train(TrainConfig(model="tiny-llama", seed=s, save_model=False, **SMALL), tmp_path / f"r{i}")
            for i, s in enumerate([7, 7, 8])]
    keys = ("dev", "train_loss", "train_loss_curve", "eval_curve")
    assert all(getattr(runs[0], k) == getattr(runs[1], k) for k in keys)
    assert runs[0].train_loss_curve != runs[2].train_loss_curve


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
    assert m.status == "failed"
    assert "became nan" in m.reason or "became inf" in m.reason
    assert not (tmp_path / "r" / "model").exists()


@pytest.mark.slow
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
    assert resumed.status == "ok" and resumed.dev == clean.dev


def _fake_checkpoint(folder, state: str, files=("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth")):
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes(b"x")
    (folder / "trainer_state.json").write_text(state)


def test_last_complete_checkpoint_prefers_the_newest_complete_one(tmp_path):
    from lorascope.train.resume import last_complete_checkpoint

    for step, state in ((5, '{"global_step": 5}'), (10, '{"global_step": 10}'), (15, '{"glob')):
        _fake_checkpoint(tmp_path / f"checkpoint-{step}", state)
    (tmp_path / "checkpoint-20").mkdir()  # cut off before trainer_state.json was written
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-5"]


@pytest.mark.parametrize("missing", ["adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"])
def test_checkpoint_cut_off_mid_delete_is_not_resumed(tmp_path, missing):
    """The Trainer deletes checkpoints file by file: a kill can leave trainer_state.json beside missing files."""
    from lorascope.train.resume import last_complete_checkpoint

    _fake_checkpoint(tmp_path / "checkpoint-5", '{"global_step": 5}')
    files = [f for f in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth") if f != missing]
    _fake_checkpoint(tmp_path / "checkpoint-10", '{"global_step": 10}', files)
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-5")


def test_sharded_checkpoint_needs_every_shard(tmp_path):
    from lorascope.train.resume import has_weights

    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"x")
    assert not has_weights(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"x")
    assert has_weights(tmp_path)


@pytest.mark.slow
def test_group_by_length_cuts_padding(glue_dir, tmp_path):
    cfg = TrainConfig(model="tiny-llama", task="rte", train_limit=64, eval_limit=8, epochs=1, batch_size=8,
                      max_length=128, save_model=False, patience=0)
    grouped = run_train(cfg, tmp_path / "grouped")
    shuffled = run_train(cfg.model_copy(update={"group_by_length": False}), tmp_path / "shuffled")
    assert grouped.tokens_real == shuffled.tokens_real
    # RTE premises vary from a few to 100+ tokens: random batches carry far more padding.
    waste = {name: m.tokens_processed / m.tokens_real - 1 for name, m in (("g", grouped), ("s", shuffled))}
    assert waste["g"] < 0.5 * waste["s"], waste


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("bad", ["model", "data"])
def test_overwrite_with_bad_input_keeps_the_finished_run(glue_dir, tmp_path, csv_task, bad):
    from lorascope.errors import LorascopeError

    out = tmp_path / "r"
    cfg = TrainConfig(model="tiny-llama", save_model=False, **SMALL)
    run_train(cfg, out)
    before = _tree(out)
    if bad == "model":
        update = {"model": "no-such-model"}
    else:  # a task whose files lack a declared text column
        task = csv_task.with_name("bad.yaml")
        task.write_text(csv_task.read_text().replace("text_columns: [text]", "text_columns: [review]"))
        update = {"task": str(task)}
    with pytest.raises(LorascopeError, match="no-such-model" if bad == "model" else "missing column 'review'"):
        run_train(cfg.model_copy(update=update), out, overwrite=True)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r")) == ["r"]


@pytest.mark.slow
def test_overwrite_replaces_the_finished_run_only_once_the_new_one_is_complete(glue_dir, tmp_path, monkeypatch):
    from transformers import Trainer

    out = tmp_path / "r"
    old_cfg = TrainConfig(model="tiny-llama", save_model=False, **SMALL)
    new_cfg = old_cfg.model_copy(update={"lr": 1e-3})
    run_train(old_cfg, out)
    before = _tree(out)

    def crash(self, *args, **kwargs):
        raise RuntimeError("killed mid-training")

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "training_step", crash)
        with pytest.raises(RuntimeError, match="killed"):
            run_train(new_cfg, out, overwrite=True)
    assert _tree(out) == before  # the old run is untouched while the new one is unfinished
    m = run_train(new_cfg, out, overwrite=True)
    assert m.status == "ok" and json.loads((out / "metrics.json").read_text()) == m.model_dump(exclude_unset=True)
    assert "lr: 0.001" in (out / "config.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no .partial, no .old


def test_finish_cut_between_its_renames_is_completed(tmp_path, monkeypatch):
    import os

    from lorascope import artifacts

    out, partial = tmp_path / "run", artifacts.partial_path(tmp_path / "run")
    for folder, text in ((out, "old"), (partial, "new")):
        folder.mkdir()
        (folder / "metrics.json").write_text(text)
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the renames")
        real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        artifacts.finish(partial, out)
    monkeypatch.setattr(artifacts.os, "replace", real_replace)
    assert not out.exists() and (artifacts.old_path(out) / "metrics.json").read_text() == "old"
    artifacts.recover_finish(out)
    assert (out / "metrics.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_divergence_guard_fails_a_finite_loss_explosion():
    from transformers import TrainerControl, TrainerState

    from lorascope.train.callbacks import DivergenceGuard

    state = TrainerState(global_step=8, epoch=1.0, log_history=[{"loss": 0.69, "step": 1}])
    guard = DivergenceGuard(factor=100)
    for ok in ({"loss": 5.0}, {"eval_loss": 99.0}, {"grad_norm": 1e6}):
        assert not guard.on_log(None, state, TrainerControl(), logs=ok).should_training_stop
    assert guard.reason is None
    control = guard.on_log(None, state, TrainerControl(should_save=True), logs={"eval_loss": 1.2e7})
    assert control.should_training_stop and not control.should_save
    assert guard.reason.startswith("eval_loss 1.2e+07 > 100") and "step 8" in guard.reason
    # The limit is 100 × the first logged training loss floored at 1, wherever the history was restored from.
    state.log_history = [{"loss": 0.01, "step": 1}, {"loss": 50.0, "step": 4}]
    assert not DivergenceGuard(factor=100).on_log(None, state, TrainerControl(), logs={"loss": 99.0}).should_training_stop
    assert DivergenceGuard(factor=100).on_log(None, state, TrainerControl(), logs={"loss": 101.0}).should_training_stop
    assert DivergenceGuard(factor=None).on_log(None, state, TrainerControl(), logs={"loss": 1e30}).should_training_stop is False
    assert DivergenceGuard(factor=None).on_log(None, state, TrainerControl(), logs={"loss": float("inf")}).should_training_stop


def test_exploding_loss_is_recorded_as_failed(glue_dir, tmp_path):
    # Finite all along (no NaN/inf), but the loss reaches 10^3-10^6 from 0.69.
    cfg = TrainConfig(model="tiny-llama", method="full", lr=100.0, **SMALL)
    m = run_train(cfg, tmp_path / "r")
    assert m.status == "failed" and "> 100 (100 × max(1, initial training loss" in m.reason
    assert m.dev == {} and not (tmp_path / "r" / "model").exists()
