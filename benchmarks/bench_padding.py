"""Padding strategies side by side: one epoch of MRPC training on MiniLM.

Three variants: dynamic padding with length-grouped batches (the default), dynamic padding with
random batches, and padding every batch to ``max_length`` (the reference study's behaviour).

    .venv/bin/python benchmarks/bench_padding.py [--train-limit N] [--method lora|full]

All variants train the same model from the same seed on the same examples in one process (the
order rotates per repeat, so machine drift hits all alike); the script prints tokens
processed (padded tokens the model computed on), real tokens, wall time, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from lorascope.cli.common import quiet_libraries
from lorascope.train.config import TrainConfig
from lorascope.train.run import prepare_run
from lorascope.train.trainer import build_trainer


def train_once(cfg: TrainConfig) -> dict[str, float]:
    run = prepare_run(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = build_trainer(run.loaded.model, run.loaded.tokenizer, run.train_ds, run.eval_ds, cfg, run.spec,
                                   Path(tmp), evaluate=False)
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
    collator = trainer.data_collator
    return {"wall_s": wall, "tokens_processed": collator.padded_tokens, "tokens_real": collator.real_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--task", default="mrpc")
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--train-limit", type=int, default=None, help="default: the whole training split")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    quiet_libraries()
    os.environ.setdefault("GLUE_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))
    base = TrainConfig(task=args.task, method=args.method, model=args.model, train_limit=args.train_limit, epochs=1,
                       max_length=args.max_length, batch_size=args.batch_size, save_model=False, logging_steps=50)
    variants = {
        "dynamic, grouped": {"group_by_length": True, "pad_to_max_length": False},
        "dynamic, random": {"group_by_length": False, "pad_to_max_length": False},
        "pad to max_length": {"group_by_length": False, "pad_to_max_length": True},
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            results[name].append(train_once(base.model_copy(update=variants[name])))
    mean = {k: {m: sum(x[m] for x in v) / len(v) for m in v[0]} for k, v in results.items()}
    print(f"\none epoch of {args.task} ({base.train_limit or 'all'} examples) on {args.model}, {args.method}, "
          f"batch {args.batch_size}, max_length {args.max_length}, {args.repeats} repeat(s)")
    print(f"{'variant':<22}{'tokens processed':>18}{'real tokens':>14}{'wall s':>10}{'tokens ×':>10}{'wall ×':>9}")
    ref = mean["dynamic, grouped"]
    for name, m in mean.items():
        print(f"{name:<22}{m['tokens_processed']:>18,.0f}{m['tokens_real']:>14,.0f}{m['wall_s']:>10.1f}"
              f"{m['tokens_processed'] / ref['tokens_processed']:>10.2f}{m['wall_s'] / ref['wall_s']:>9.2f}")
    print("(× columns: ratio to dynamic padding with length-grouped batches)")


if __name__ == "__main__":
    main()
