"""Representation extraction throughput (samples/s) for several models, side by side in one run.

    .venv/bin/python benchmarks/bench_extract.py [--models minilm smollm2] [--n 256] [--task sst2]

Every model extracts mean-pooled and head-token states of all layers for the same dev samples
(dynamic padding); the script reports samples/s, tokens/s, the output size and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import psutil
import torch

from lorascope.cli.common import quiet_libraries
from lorascope.data import get_task, load_split, subsample
from lorascope.data.tokenize import tokenize_dataset
from lorascope.models import load_classifier
from lorascope.represent.extract import extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "smollm2"])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=384)
    args = parser.parse_args()
    quiet_libraries()
    os.environ.setdefault("GLUE_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))
    spec = get_task(args.task)
    samples = subsample(load_split(spec, "validation"), args.n, 0)
    rows = []
    for name in args.models:
        lm = load_classifier(name, spec.label_names, seed=0)
        ds = tokenize_dataset(samples, lm.tokenizer, is_pair=spec.is_pair, is_decoder=lm.is_decoder, max_length=args.max_length)
        tokens = sum(len(x) for x in ds["input_ids"])
        extract(lm.model, lm.tokenizer, ds.select(range(min(16, len(ds)))), is_decoder=lm.is_decoder, progress=False)  # warm-up
        start = time.perf_counter()
        states = extract(lm.model, lm.tokenizer, ds, is_decoder=lm.is_decoder, batch_size=args.batch_size, progress=False)
        wall = time.perf_counter() - start
        shape = states["mean"].shape
        rows.append((name, len(ds), shape, wall, tokens))
        del lm, states
    rss = psutil.Process().memory_info().rss / 2**30
    print(f"\nextraction on {args.task} dev, n={args.n}, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"{'model':<10}{'layers x d':>14}{'wall s':>9}{'samples/s':>11}{'tokens/s':>10}")
    for name, n, shape, wall, tokens in rows:
        print(f"{name:<10}{f'{shape[0]} x {shape[2]}':>14}{wall:>9.2f}{n / wall:>11.1f}{tokens / wall:>10.0f}")
    if len(rows) > 1:
        print(f"ratio {rows[0][0]}/{rows[1][0]} samples/s: {(rows[0][1] / rows[0][3]) / (rows[1][1] / rows[1][3]):.2f}x")
    print(f"process RSS at end: {rss:.2f} GiB")


if __name__ == "__main__":
    main()
