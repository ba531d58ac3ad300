"""A reduced paper profile end to end on the GPU, and a check that every stage really ran there.

    .venv/bin/python benchmarks/gpu_check.py                 # on a GPU machine (no network needed)
    .venv/bin/python benchmarks/gpu_check.py --cpu-dry-run   # the same pipeline on the CPU, tiny model, minutes

The GPU run trains a Llama with TinyLlama-1.1B's shapes and random weights (built locally with a
fixed seed, MiniLM's tokenizer standing in, as the ``tinyllama-shape`` alias does; nothing is
downloaded): sanity, LoRA and full fine-tuning × 2 seeds on RTE and MRPC, drift, the weight lens
and forgetting (on RTE's runs), the serving benchmark with every strategy, and the report. Per stage it prints the wall
time, the peak GPU memory, and the devices the stage's models were put on, recorded where they are
resolved (``lorascope.models.device.resolve_device``, the Trainer's ``args.device``, the benchmark's
resolver). It exits 1 when a stage that loads a model put one on the CPU or allocated nothing on
the GPU, or when a stage failed. Random weights learn nothing: the verdicts say "not interpretable",
which is not what is checked here.

``--cpu-dry-run`` runs the same stages with the ``tiny-llama`` alias on the CPU, expects the CPU
everywhere, and checks the same way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
# The weight lens last before the report: its float64 SVDs run on the CPU and take longest at
# TinyLlama's width, so a check cut short still has every other stage's row.
STAGES = ["sanity", "train", "drift", "forgetting", "bench", "weights", "report"]
MODEL_STAGES = {"sanity", "train", "drift", "weights", "forgetting", "bench"}
# Two tasks give the benchmark its three trained adapters (the 3-adapter strategies need them); the
# weight lens (float64 SVDs on the CPU: W₀'s once per matrix, then three per matrix and run) and
# forgetting measure one task's runs.
TASKS = ["rte", "mrpc"]
ONLY = {"weights": {"task": "rte"}, "forgetting": {"task": "rte"}}


def build_tinyllama_shape(folder: Path) -> Path:
    """A causal Llama with TinyLlama-1.1B's shapes and seeded random weights, saved as a model folder
    (the forgetting lens needs the language-model head; the analyses a pretrained-looking folder)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from lorascope.models.packages import minilm_dir
    from lorascope.models.shapes import tinyllama_shape_config

    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    tokenizer.eos_token = "[SEP]"  # WordPiece has no EOS: [SEP] plays it (and pad), as for tiny-llama
    config = tinyllama_shape_config(num_labels=2, pad_token_id=tokenizer.eos_token_id)
    config.eos_token_id, config.bos_token_id, config.architectures = tokenizer.eos_token_id, None, ["LlamaForCausalLM"]
    torch.manual_seed(0)
    with torch.device("cuda"):  # built where it runs: no 4 GB host-side initialisation
        model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def study_settings(model: str, out: Path, gpu: bool) -> dict[str, Any]:
    """The reduced paper profile: its stages and statistics, a fraction of its data."""
    size = dict(train_limit=256, eval_limit=64, max_length=128) if gpu else dict(train_limit=24, eval_limit=16,
                                                                                    max_length=48)
    return {
        "name": "gpu-check", "model": model, "tasks": TASKS, "methods": ["lora", "full"], "seeds": [42, 1337],
        "out": str(out), "device": "cuda" if gpu else "cpu", "stages": STAGES,
        "train": {**size, "epochs": 1, "batch_size": 8, "eval_batch_size": 32, "warmup_ratio": 0.1},
        "method_train": {"lora": {"lr": 5.0e-4}, "full": {"lr": 2.0e-5}},
        "sanity": {"samples": 4, "max_epochs": 2, "threshold": 10.0},
        "drift": {"n_samples": 128 if gpu else 32, "max_length": size["max_length"], "batch_size": 16,
                  "bootstrap": 100 if gpu else 20},
        "forgetting": {"n_texts": 64 if gpu else 8, "max_length": 128 if gpu else 32},
        "bench": {"batch_sizes": [1, 8] if gpu else [1, 2], "requests": 16 if gpu else 4, "warmup": 2 if gpu else 1,
                  "overrides": {"device": "cuda" if gpu else "cpu", "dtype": "bf16" if gpu else "fp32"}},
    }


class DeviceRecorder:
    """The devices models are put on, per stage: every resolution of a device setting and every Trainer's device."""

    def __init__(self) -> None:
        self.stage = ""
        self.seen: dict[str, set[str]] = {}

    def note(self, device: Any) -> None:
        self.seen.setdefault(self.stage, set()).add(torch.device(device).type)

    def install(self) -> None:
        import lorascope.bench.prepare as bench_prepare
        import lorascope.models.device as device_module
        import lorascope.models.load as load_module
        import lorascope.train.run as train_run

        real = device_module.resolve_device

        def resolve(setting: str = "auto", *, name: str = "device") -> torch.device:
            device = real(setting, name=name)
            self.note(device)
            return device

        for module in (device_module, load_module, bench_prepare):
            module.resolve_device = resolve
        build = train_run.build_trainer

        def build_trainer(*args: Any, **kwargs: Any) -> Any:
            trainer, guard = build(*args, **kwargs)
            self.note(trainer.args.device)
            return trainer, guard

        train_run.build_trainer = build_trainer
        import lorascope.checks.sanity as sanity

        sanity.build_trainer = build_trainer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny-llama on the CPU (checks the pipeline here)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu-check")
    parser.add_argument("--keep", action="store_true", help="keep the study folder of an earlier check (resume it)")
    args = parser.parse_args()
    os.environ.setdefault("GLUE_DIR", str(REPO.parent / "shared" / "data" / "glue"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    gpu = not args.cpu_dry_run
    if gpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --cpu-dry-run to check the pipeline on the CPU)", file=sys.stderr)
        return 2
    from rich.console import Console

    from lorascope.cli.common import quiet_libraries
    from lorascope.config import build_config
    from lorascope.study.config import StudyConfig
    from lorascope.study.runner import run_study

    quiet_libraries()
    study_out = args.out / ("study" if gpu else "study-cpu")
    if not args.keep:
        shutil.rmtree(study_out, ignore_errors=True)
    model = str(build_tinyllama_shape(args.out / "tinyllama-shape")) if gpu else "tiny-llama"
    cfg = build_config(StudyConfig, study_settings(model, study_out, gpu), source="gpu_check")
    recorder = DeviceRecorder()
    recorder.install()
    rows: list[dict[str, Any]] = []
    expected = "cuda" if gpu else "cpu"
    name = torch.cuda.get_device_name(0) if gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"gpu_check on {name}, torch {torch.__version__}, model {model}")
    print(f"{'stage':<11} {'wall s':>8} {'peak GPU MiB':>13}  {'models on':<10} check", flush=True)
    for stage in STAGES:
        recorder.stage = stage
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        error = ""
        try:
            run_study(cfg.model_copy(update={"stages": [stage]}), only=ONLY.get(stage), console=Console(quiet=True))
        except Exception as exc:  # reported in the table; the next stages still run where they can
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() if gpu else 0
        devices = sorted(recorder.seen.get(stage, set()))
        ok = not error
        if stage in MODEL_STAGES:
            ok = ok and devices == [expected] and (peak > 0 or not gpu)
        r = {"stage": stage, "seconds": seconds, "peak": peak, "devices": devices, "ok": ok, "error": error}
        rows.append(r)
        on = ",".join(r["devices"]) or ("–" if r["stage"] not in MODEL_STAGES else "nothing")
        verdict = "ok" if r["ok"] else ("FAILED: " + r["error"] if r["error"] else f"FELL BACK (expected {expected})")
        print(f"{r['stage']:<11} {r['seconds']:>8.1f} {r['peak'] / 2**20:>13.0f}  {on:<10} {verdict}", flush=True)
    bad = [r["stage"] for r in rows if not r["ok"]]
    print(f"{'all stages on ' + expected if not bad else 'not on ' + expected + ' or failed: ' + ', '.join(bad)}; "
          f"study folder {study_out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
