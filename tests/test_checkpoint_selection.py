"""Which checkpoint a run keeps: ``select_by`` chooses it and stops training early, a ``selection_split``
keeps dev out of the choice, and the record warns when the choice hides learning or the task leaks its labels.

The CoLA-like task is built so that loss and metric disagree, as on the reported CoLA run: 86%
of the training rows are ``acceptable``; every ``unacceptable`` one contains the word "purple".
Dev also has ``acceptable`` rows with "purple", so a model that learned the cue gains Matthews
correlation and, being confidently wrong on those rows, loses on dev loss. Warm-up over the
first 1.5 epochs keeps the first epochs at the majority label. Measured with tiny-llama, full
fine-tuning at lr 2e-3 for 5 epochs, seeds 1-5: every seed's lowest dev loss is at a checkpoint
that predicts only ``acceptable`` (epoch 1 or 2) while a later one reaches Matthews 0.17-0.34.
Seed 1, used here, has the widest margin: dev loss 0.376 / 0.375 at the constant epochs 1-2,
at least 0.544 at the later ones, and Matthews 0.338 at epoch 4.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from lorascope.errors import ConfigError
from lorascope.train import TrainConfig, run_train

pytestmark = pytest.mark.usefixtures("single_thread")

WORDS = ("the a cat dog sat ran on under big small house tree river green blue quickly slowly near far old new").split()
CUE = "purple"
COLA_RUN = dict(model="tiny-llama", method="full", lr=2e-3, warmup_ratio=0.3, epochs=5, batch_size=8, max_length=32,
                seed=1, patience=2, save_model=False)


def _sentences(n: int, rng: random.Random, seen: set[str], cue: bool = False) -> list[str]:
    """``n`` distinct six-word sentences, none in ``seen`` (so that a row's tokens identify it), with ``CUE`` if asked."""
    out = []
    while len(out) < n:
        words = [rng.choice(WORDS) for _ in range(6)]
        if cue:
            words.insert(rng.randrange(7), CUE)
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _write_task(folder: Path, name: str, train: list[tuple[str, str]], dev: list[tuple[str, str]], labels: str,
                metrics: str) -> Path:
    rng = random.Random(1)
    for split, rows in (("train", train), ("dev", dev)):
        rows = list(rows)
        rng.shuffle(rows)
        (folder / f"{split}.csv").write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    task = folder / f"{name}.yaml"
    task.write_text(f"name: {name}\nfiles: {{train: train.csv, validation: dev.csv}}\ntext_columns: [text]\n"
                    f"label_column: label\nlabels: {labels}\nmetrics: {metrics}\n")
    return task


@pytest.fixture()
def cola_like(tmp_path) -> Path:
    """An imbalanced task (module docstring): train 72 acceptable / 12 unacceptable; dev 42 / 6."""
    rng, seen = random.Random(0), set()
    train = ([(t, "acceptable") for t in _sentences(72, rng, seen)]
             + [(t, "unacceptable") for t in _sentences(12, rng, seen, cue=True)])
    dev = ([(t, "acceptable") for t in _sentences(24, rng, seen)]
           + [(t, "acceptable") for t in _sentences(18, rng, seen, cue=True)]
           + [(t, "unacceptable") for t in _sentences(6, rng, seen, cue=True)])
    return _write_task(tmp_path, "cola_like", train, dev, "[unacceptable, acceptable]", "[matthews, accuracy]")


@pytest.fixture()
def leaky(tmp_path) -> Path:
    """A balanced task whose text ends with its label: solved from the first evaluation on."""
    rng, seen = random.Random(0), set()
    rows = {split: [(f"{t} {label}", label) for label in ("negative", "positive") for t in _sentences(n, rng, seen)]
            for split, n in (("train", 32), ("dev", 16))}
    return _write_task(tmp_path, "leaky", rows["train"], rows["dev"], "[negative, positive]", "[accuracy]")


@pytest.fixture()
def logged():
    """The lines lorascope's training logs at warning level (the CLI prints them as ``warning: …``)."""
    lines: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("lorascope.train.run")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def _at_step(record, step: int) -> dict:
    return next(e for e in record.eval_curve if e["step"] == step)


# --- select_by -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_select_by_metric_keeps_the_checkpoint_that_learned_where_loss_keeps_the_majority_one(cola_like, tmp_path, logged):
    by_loss = run_train(TrainConfig(task=str(cola_like), **COLA_RUN), tmp_path / "loss", progress=False)
    by_metric = run_train(TrainConfig(task=str(cola_like), select_by="metric", **COLA_RUN), tmp_path / "metric",
                          progress=False)
    curve = by_metric.eval_curve
    # Same seed, same training: the runs differ only in what they keep and when they stop.
    assert by_loss.eval_curve == curve[: len(by_loss.eval_curve)]
    # The premise (module docstring): epoch 1 predicts the majority label for every dev example.
    assert curve[0]["predicted_share"] == 1.0 and curve[0]["matthews"] == 0.0

    # Loss keeps a checkpoint that predicts only the majority label, the lowest in dev loss...
    kept = _at_step(by_loss, by_loss.best_step)
    assert kept["predicted_share"] == 1.0 and kept["loss"] == min(e["loss"] for e in by_loss.eval_curve)
    assert by_loss.dev["matthews"] == 0.0 and not by_loss.learning_check["learned"]
    assert by_loss.learning_check["reasons"] == ["every dev prediction is the same label",
                                                 "dev MCC 0.000 is at the majority baseline (0.000)"]
    assert by_loss.selection == {"split": "dev", "by": "loss", "metric": "loss", "n": 48, "fraction": None,
                                 "seed": None, "best_value": kept["loss"]}
    # ... early stopping on loss ends the run `patience` (2) evaluations after it ...
    assert by_loss.epochs_trained == by_loss.best_epoch + 2 < 5
    # ... and the run says that it hid a checkpoint that learned, in the record and on the console.
    assert len(by_loss.warnings) == 1
    warning = by_loss.warnings[0]
    assert warning.startswith(f"the restored checkpoint (step {by_loss.best_step}, epoch {by_loss.best_epoch:g}) "
                              "predicts one label for every dev example, but the checkpoint at step ")
    assert warning.endswith("the lowest dev loss chose it (select_by: metric chooses by matthews)")
    assert f"cola_like full seed 1: {warning}" in logged

    # Matthews keeps the best checkpoint by Matthews, a later one that learned, and trains on while Matthews
    # improves: past the loss run's stop.
    best = max(curve, key=lambda e: e["matthews"])
    assert by_metric.best_step == best["step"] > by_loss.best_step and best["predicted_share"] < 1.0
    assert by_metric.dev["matthews"] == best["matthews"] > 0.1
    assert by_metric.learning_check["learned"] and by_metric.warnings == []
    assert by_metric.selection["metric"] == "matthews" and by_metric.selection["best_value"] == best["matthews"]
    assert by_metric.epochs_trained == 5.0
    assert not by_loss.leak_check["suspected"] and not by_metric.leak_check["suspected"]


def test_select_by_accepts_loss_or_metric_and_names_the_key():
    from lorascope.config import build_config

    with pytest.raises(ConfigError, match=r"^train: 'select_by': Input should be 'loss' or 'metric' \(got 'matthews'\)$"):
        build_config(TrainConfig, {"select_by": "matthews"}, source="train")
    with pytest.raises(ConfigError, match=r"^train: 'selection_split': Input should be less than or equal to 0.5"):
        build_config(TrainConfig, {"selection_split": 0.8}, source="train")


def test_runs_made_before_selection_settings_existed_still_match(tmp_path):
    """A run folder stores neither key at the old behaviour, so published studies are reused, not retrained."""
    from lorascope.artifacts import write_json
    from lorascope.config import config_to_dict, dump_yaml
    from lorascope.train.run import completed_metrics

    old = {k: v for k, v in config_to_dict(TrainConfig()).items()}
    assert "select_by" not in old and "selection_split" not in old
    assert config_to_dict(TrainConfig(select_by="loss", selection_split=None)) == old
    out = tmp_path / "run"
    out.mkdir()
    dump_yaml(old, out / "config.yaml")
    write_json(out / "metrics.json", {"status": "ok"})
    assert completed_metrics(out, old) == {"status": "ok"}
    for changed, shown in ((dict(select_by="metric"), "select_by: stored '<missing>' != current 'metric'"),
                           (dict(selection_split=0.1), "selection_split: stored '<missing>' != current 0.1")):
        with pytest.raises(ConfigError, match=shown):
            completed_metrics(out, config_to_dict(TrainConfig(**changed)))


# --- selection_split -----------------------------------------------------------------------------


def _uniform(labels: list[int]):
    import datasets

    return datasets.Dataset.from_dict({"id": [f"train-{i}" for i in range(len(labels))], "text_a": ["x"] * len(labels),
                                       "text_b": [""] * len(labels), "label": labels})


def test_selection_split_is_stratified_seeded_and_disjoint():
    from lorascope.train.selection import split_for_selection

    ds = _uniform([1] * 80 + [0] * 20)
    train, held = split_for_selection(ds, 0.1, seed=0)
    assert len(held) == 10 and len(train) == 90
    assert sorted(held["label"]) == [0, 0] + [1] * 8  # the 20% minority keeps its share
    assert set(train["id"]).isdisjoint(held["id"]) and set(train["id"]) | set(held["id"]) == set(ds["id"])
    assert train["id"] == sorted(train["id"], key=lambda i: int(i.split("-")[1]))  # file order kept
    again_train, again_held = split_for_selection(ds, 0.1, seed=0)
    assert again_held["id"] == held["id"] and again_train["id"] == train["id"]
    assert split_for_selection(ds, 0.1, seed=1)[1]["id"] != held["id"]
    assert split_for_selection(ds, None, seed=0) == (ds, None)


def test_selection_split_that_cannot_hold_every_label_is_a_config_error():
    from lorascope.train.selection import split_for_selection

    with pytest.raises(ConfigError, match=r"^selection_split: cannot hold out 0.1 of 10 training examples"):
        split_for_selection(_uniform([1] * 9 + [0]), 0.1, seed=0)


def test_selection_split_is_drawn_by_data_seed_not_the_run_seed(cola_like):
    from lorascope.train import prepare_run

    base = dict(task=str(cola_like), model="tiny-llama", max_length=32, selection_split=0.25)
    held = {key: prepare_run(TrainConfig(**base, **settings)).selection_ds["id"]
            for key, settings in (("s1", dict(seed=1)), ("s2", dict(seed=2)), ("d1", dict(seed=1, data_seed=1)))}
    assert held["s1"] == held["s2"] != held["d1"]
    assert len(held["s1"]) == 21 and len(prepare_run(TrainConfig(**{**base, "selection_split": None})).train_ds) == 84


@pytest.mark.slow
def test_selection_split_chooses_the_checkpoint_and_dev_scores_only_the_kept_model(cola_like, tmp_path, monkeypatch):
    from transformers import Trainer

    from lorascope.models import load_run
    from lorascope.train import prepare_run
    from tests.helpers import logits_of

    seen: list[tuple[str, set]] = []  # (what the Trainer was doing, the rows it evaluated)
    evaluation_loop = Trainer.evaluation_loop

    def spy(self, dataloader, description, *args, **kwargs):
        seen.append((description, {tuple(x) for x in dataloader.dataset["input_ids"]}))
        return evaluation_loop(self, dataloader, description, *args, **kwargs)

    monkeypatch.setattr(Trainer, "evaluation_loop", spy)
    cfg = TrainConfig(task=str(cola_like), **{**COLA_RUN, "save_model": True}, select_by="metric", selection_split=0.25)
    out = tmp_path / "run"
    m = run_train(cfg, out, progress=False)

    whole = prepare_run(cfg.model_copy(update={"selection_split": None}))
    train_rows = {tuple(x) for x in whole.train_ds["input_ids"]}
    dev_rows = {tuple(x) for x in whole.eval_ds["input_ids"]}
    assert train_rows.isdisjoint(dev_rows)
    during, after = [rows for what, rows in seen if what == "Evaluation"], [rows for what, rows in seen if what == "Prediction"]
    # Every evaluation during training ran on the same 21 held-out training rows, never on dev.
    assert len(during) == len(m.eval_curve) >= 2 and all(rows == during[0] for rows in during)
    assert len(during[0]) == 21 and during[0] <= train_rows and during[0].isdisjoint(dev_rows)
    # Dev was used once, after training, on the kept checkpoint.
    assert after == [dev_rows]
    assert m.n_train == 84 - 21 and m.n_eval == 48
    assert m.selection == {"split": "selection_split", "by": "metric", "metric": "matthews", "n": 21, "fraction": 0.25,
                           "seed": 0, "best_value": _at_step(m, m.best_step)["matthews"]}
    assert m.selection["best_value"] == max(e["matthews"] for e in m.eval_curve)
    # The recorded dev scores are those of the saved (kept) model on dev.
    import torch

    logits = logits_of(load_run(out).model, whole.loaded.tokenizer, whole.eval_ds)
    loss = float(torch.nn.functional.cross_entropy(logits, torch.tensor(list(whole.eval_ds["labels"]))))
    assert loss == pytest.approx(m.dev["loss"], abs=1e-5)
    assert m.dev["loss"] != _at_step(m, m.best_step)["loss"]  # not the selection rows' loss


# --- warnings ------------------------------------------------------------------------------------


def _curve(*entries: tuple[int, float, float]) -> list[dict]:
    """Evaluations as (step, matthews, predicted_share), one per epoch."""
    return [{"step": s, "epoch": float(i + 1), "loss": 0.5, "matthews": v, "predicted_share": p}
            for i, (s, v, p) in enumerate(entries)]


def test_constant_restored_checkpoint_warns_only_when_another_learned():
    from lorascope.train.learned import constant_restored_warning

    curve = _curve((10, 0.0, 1.0), (20, 0.140, 0.9), (30, 0.164, 0.85))
    warning = constant_restored_warning(curve, 10, "matthews", "loss", "dev")
    assert warning == ("the restored checkpoint (step 10, epoch 1) predicts one label for every dev example, but the "
                       "checkpoint at step 30 (epoch 3) did not (matthews 0.164 against 0.000); the lowest dev loss "
                       "chose it (select_by: metric chooses by matthews)")
    assert "every selection split example" in constant_restored_warning(curve, 10, "matthews", "loss", "selection_split")
    assert constant_restored_warning(curve, 10, "matthews", "metric", "dev") is None  # the metric kept the best by it
    assert constant_restored_warning(curve, 30, "matthews", "loss", "dev") is None  # the kept one learned
    assert constant_restored_warning(_curve((10, 0.0, 1.0), (20, 0.0, 1.0)), 10, "matthews", "loss", "dev") is None
    # Spread predictions that score no higher than the constant ones hid nothing.
    no_better = _curve((10, 0.0, 1.0), (20, -0.09, 0.8), (30, 0.0, 0.9))
    assert constant_restored_warning(no_better, 10, "matthews", "loss", "dev") is None
    assert constant_restored_warning(curve, None, "matthews", "loss", "dev") is None  # nothing restored (failed run)


def test_leak_check_needs_a_near_perfect_first_evaluation_and_dev_score():
    from lorascope.train.learned import leak_check, leak_warning

    first = {"step": 8, "epoch": 1.0, "accuracy": 1.0}
    assert leak_check("accuracy", first, 0.995, "dev")["suspected"]
    assert not leak_check("accuracy", {**first, "accuracy": 0.9}, 1.0, "dev")["suspected"]  # learned it over time
    assert not leak_check("accuracy", first, 0.9, "dev")["suspected"]
    assert not leak_check("accuracy", None, 1.0, "dev")["suspected"]
    assert leak_warning(leak_check("accuracy", {**first, "accuracy": 0.9}, 1.0, "dev")) is None
    assert leak_warning(leak_check("accuracy", first, 1.0, "selection_split")).startswith(
        "accuracy 100.0% on selection split at the first evaluation (epoch 1) and 100.0% on dev: near-perfect")


def test_a_task_whose_text_contains_the_label_is_flagged(leaky, tmp_path, logged):
    cfg = TrainConfig(task=str(leaky), model="tiny-llama", method="lora", lr=5e-3, epochs=2, batch_size=8, max_length=32,
                      save_model=False)
    m = run_train(cfg, tmp_path / "run", progress=False)
    assert m.ok and m.leak_check["suspected"]
    assert m.leak_check | {"first_value": None} == {
        "suspected": True, "metric": "accuracy", "first_value": None, "first_step": 8, "first_epoch": 1.0,
        "final_value": m.dev["accuracy"], "level": 0.99, "split": "dev"}
    assert m.leak_check["first_value"] >= 0.99
    assert len(m.warnings) == 1 and "check that the text does not contain the label" in m.warnings[0]
    assert logged == [f"leaky lora seed 42: {m.warnings[0]}"]
