"""A training run killed at any instant and run again ends identical to an uninterrupted run.

Each test kills (with SIGKILL in a subprocess, or an injected exception in-process) one
multi-epoch tiny-llama run at a chosen instant, reruns it with the same config, and compares the
final adapter weights bit for bit and ``metrics.json`` (dev metrics, best step, loss curves,
steps...) with an uninterrupted run of the same config.

Both configs: 24 steps per epoch, an evaluation and a checkpoint every 8 steps, early stopping
with patience 3, 72 steps if nothing stops it. As measured: GROUPED (length-grouped batches, the
default) is best at step 16 and stops at 40, in epoch 2; RANDOM (random batches) is best at 24
and stops at 48, the end of epoch 2. HELD_OUT chooses by the main metric on a quarter of the
training rows held out (18 steps per epoch, an evaluation every 6) and scores dev once, at the end:
best at step 6 and stops at 24.
Tests that rely on the early stop check it first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import Trainer

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.slow]

BASE = dict(model="tiny-llama", task="sst2", train_limit=96, eval_limit=32, epochs=3, evals_per_epoch=3, batch_size=4,
            max_length=48, lora_dropout=0.1, logging_steps=4, lr=1e-2, patience=3)
GROUPED = dict(BASE, seed=2)
RANDOM = dict(BASE, seed=7, group_by_length=False)
HELD_OUT = dict(BASE, seed=2, select_by="metric", selection_split=0.25)
STEPS_PER_EPOCH, EVAL_STEPS, MAX_STEPS = 24, 8, 72
# Everything in metrics.json that does not measure wall time.
COMPARED = ("status", "reason", "dev", "best_step", "best_epoch", "epochs_trained", "steps", "train_loss",
            "train_loss_curve", "eval_curve", "tokens_processed", "tokens_real", "selection", "learning_check",
            "leak_check", "warnings")
ADAPTER = Path("adapter") / "adapter_model.safetensors"

_references: dict[str, tuple[dict, dict]] = {}


class Crash(Exception):
    """The injected failure."""


def _config(settings: dict):
    from lorascope.train import TrainConfig

    return TrainConfig(**settings)


def _reference(tmp_path_factory, settings: dict) -> tuple[dict, dict]:
    """(metrics, adapter weights) of the uninterrupted run, trained once per module."""
    from lorascope.train import run_train

    key = json.dumps(settings, sort_keys=True)
    if key not in _references:
        out = tmp_path_factory.mktemp("reference") / "run"
        metrics = run_train(_config(settings), out, progress=False)
        _references[key] = (metrics.model_dump(), load_file(out / ADAPTER))
    return _references[key]


def _assert_identical(out: Path, reference: tuple[dict, dict]) -> None:
    ref_metrics, ref_weights = reference
    metrics = json.loads((out / "metrics.json").read_text())
    assert {k: metrics[k] for k in COMPARED} == {k: ref_metrics[k] for k in COMPARED}
    weights = load_file(out / ADAPTER)
    assert weights.keys() == ref_weights.keys()
    different = [k for k in weights if not (weights[k].dtype == ref_weights[k].dtype and weights[k].equal(ref_weights[k]))]
    assert not different, f"weights differ: {different[:3]}"
    assert not Path(f"{out}.partial").exists()


def _always(*args, **kwargs) -> bool:
    return True


def _raise(*args, **kwargs):
    raise Crash("injected")


def _crash(monkeypatch, owner, name: str, when=_always, after: bool = False) -> list[int]:
    """Make method ``owner.name`` raise ``Crash`` (before or after it runs) when ``when(self, *args, **kwargs)``.

    Returns a list that gets an item each time the crash fires.
    """
    original = getattr(owner, name)
    hits: list[int] = []

    def wrapper(self, *args, **kwargs):
        fire = when(self, *args, **kwargs)
        if fire and not after:
            hits.append(1)
            raise Crash(name)
        result = original(self, *args, **kwargs)
        if fire:
            hits.append(1)
            raise Crash(name)
        return result

    monkeypatch.setattr(owner, name, wrapper)
    return hits


def _crash_then_rerun(monkeypatch, out: Path, settings: dict, owner, name: str, inspect=None, **crash) -> None:
    """Run until the injected crash, call ``inspect()`` on what it left, then rerun to completion."""
    from lorascope.train import run_train

    with monkeypatch.context() as patch:
        hits = _crash(patch, owner, name, **crash)
        with pytest.raises(Crash):
            run_train(_config(settings), out, progress=False)
    assert hits and not out.exists()
    if inspect is not None:
        inspect()
    run_train(_config(settings), out, progress=False)


def _checkpoint_steps(out: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (Path(f"{out}.partial") / "checkpoints").glob("checkpoint-*"))


def _precondition(reference: tuple[dict, dict], resume_step: int) -> None:
    """The run early-stops, and ``resume_step`` lies after its best and before its stop (patience counter > 0)."""
    metrics = reference[0]
    assert metrics["status"] == "ok" and metrics["steps"] < MAX_STEPS
    assert metrics["best_step"] < resume_step < metrics["steps"]


_KILLED_RUN = """
import json, os, signal, sys
import torch
from transformers import Trainer
from lorascope.cli.common import quiet_libraries
from lorascope.train import TrainConfig, run_train

torch.set_num_threads(1)  # as the parent test process: bitwise results depend on the thread count
quiet_libraries()
settings, out, kill_at = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
step = Trainer.training_step

def training_step(self, *args, **kwargs):
    if self.state.global_step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally blocks, no atexit
    return step(self, *args, **kwargs)

Trainer.training_step = training_step
run_train(TrainConfig(**settings), out, progress=False)
"""


def test_sigkill_mid_epoch_2_resumes_identical(glue_dir, tmp_path, tmp_path_factory):
    reference = _reference(tmp_path_factory, GROUPED)
    kill_at = 36  # epoch 2, 4 steps after the checkpoint at 32 (patience counter 2 there)
    assert STEPS_PER_EPOCH < kill_at < 2 * STEPS_PER_EPOCH and kill_at % EVAL_STEPS
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, json.dumps(GROUPED), str(out), str(kill_at)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not out.exists() and _checkpoint_steps(out)[-1] == 32

    from lorascope.train import run_train

    run_train(_config(GROUPED), out, progress=False)
    _assert_identical(out, reference)


def test_crash_mid_checkpoint_save_resumes_identical(glue_dir, tmp_path, tmp_path_factory, monkeypatch):
    """Killed while writing the last checkpoint (the step where training stops)."""
    from lorascope.train.resume import is_complete_checkpoint

    reference = _reference(tmp_path_factory, GROUPED)
    stop = reference[0]["steps"]
    out = tmp_path / "run"
    cut = Path(f"{out}.partial") / "checkpoints" / f"checkpoint-{stop}"

    def half_written():
        assert (cut / "optimizer.pt").is_file() and not (cut / "trainer_state.json").exists()
        assert not is_complete_checkpoint(cut)

    # The RNG state is written after the weights, optimizer and scheduler, before trainer_state.json.
    _crash_then_rerun(monkeypatch, out, GROUPED, Trainer, "_save_rng_state", inspect=half_written,
                      when=lambda t, *a: t.state.global_step == stop)
    _assert_identical(out, reference)


def test_crash_after_training_stopped_resumes_identical(glue_dir, tmp_path, tmp_path_factory, monkeypatch):
    """Killed after early stopping wrote its last checkpoint, while the best one is restored.

    The rerun resumes from that last checkpoint and must train no further step.
    """
    reference = _reference(tmp_path_factory, RANDOM)
    stop = reference[0]["steps"]
    _precondition(reference, stop - EVAL_STEPS)
    out = tmp_path / "run"

    def stop_checkpoint_is_newest():
        assert _checkpoint_steps(out)[-1] == stop

    _crash_then_rerun(monkeypatch, out, RANDOM, Trainer, "_load_best_model", inspect=stop_checkpoint_is_newest)
    _assert_identical(out, reference)


def test_crash_during_final_save_resumes_identical(glue_dir, tmp_path, tmp_path_factory, monkeypatch):
    """Killed after the adapter folder was written, before metrics.json."""
    import peft

    reference = _reference(tmp_path_factory, GROUPED)
    out = tmp_path / "run"
    # The Trainer saves checkpoints with save_pretrained too: crash only on the run folder's adapter.
    _crash_then_rerun(monkeypatch, out, GROUPED, peft.PeftModel, "save_pretrained", after=True,
                      when=lambda model, folder, *a, **k: Path(folder).name == "adapter")
    _assert_identical(out, reference)


def test_crash_while_renaming_finishes_without_training(glue_dir, tmp_path, tmp_path_factory, monkeypatch):
    """Killed once the outputs were complete: the rerun only renames the folder into place."""
    import lorascope.artifacts as artifacts
    import lorascope.train.run as run_module

    reference = _reference(tmp_path_factory, GROUPED)
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(artifacts, "finish", _raise)  # the commit path's rename into place
        with pytest.raises(Crash):
            run_module.run_train(_config(GROUPED), out, progress=False)
    assert (Path(f"{out}.partial") / "metrics.json").is_file()
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "build_trainer", lambda *a, **k: pytest.fail("trained again"))
        run_module.run_train(_config(GROUPED), out, progress=False)
    _assert_identical(out, reference)


def test_crash_mid_epoch_with_random_batches_keeps_early_stopping_state(glue_dir, tmp_path, tmp_path_factory, monkeypatch):
    """Random batches resume exactly in transformers already; the patience counter did not."""
    reference = _reference(tmp_path_factory, RANDOM)
    crash_at = reference[0]["steps"] - EVAL_STEPS // 2
    _precondition(reference, crash_at - crash_at % EVAL_STEPS)
    out = tmp_path / "run"
    _crash_then_rerun(monkeypatch, out, RANDOM, Trainer, "training_step", when=lambda t, *a, **k: t.state.global_step == crash_at)
    _assert_identical(out, reference)


@pytest.mark.parametrize("crash", ["mid_epoch_2", "scoring_dev"])
def test_crash_with_metric_selection_on_a_held_out_split_resumes_identical(glue_dir, tmp_path, tmp_path_factory,
                                                                            monkeypatch, crash):
    """The best metric and the patience counter survive a crash mid-training; a crash while dev scores the kept
    checkpoint resumes from the last checkpoint, trains no further and scores it again."""
    reference = _reference(tmp_path_factory, HELD_OUT)
    assert reference[0]["selection"]["split"] == "selection_split" and reference[0]["n_train"] == 72
    out = tmp_path / "run"
    if crash == "mid_epoch_2":
        crash_at = 21  # 3 steps after the checkpoint at 18, where the patience counter is 2 (best at 6, stop at 24)
        assert reference[0]["best_step"] < crash_at < reference[0]["steps"]
        _crash_then_rerun(monkeypatch, out, HELD_OUT, Trainer, "training_step",
                          when=lambda t, *a, **k: t.state.global_step == crash_at)
    else:
        _crash_then_rerun(monkeypatch, out, HELD_OUT, Trainer, "predict")
    _assert_identical(out, reference)
