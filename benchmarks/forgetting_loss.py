"""The forgetting lens's next-token loss: the old full-logits path against the chunked one, side by side.

    .venv/bin/python benchmarks/forgetting_loss.py [--layers 2] [--batch-size 16] [--seq 128] [--repeats 3]

A random Llama with SmolLM2-135M's widths (vocabulary 49,152, hidden 576, intermediate 1,536, 9
heads, 3 KV heads) and ``--layers`` layers, built here (nothing is downloaded). Batches of random
token ids are right-padded to ``--seq`` like the lens's (lengths drawn uniformly from 8..seq). Both
paths score the same batches in one process, alternating, so machine drift hits both alike:

- full logits: ``lm(...).logits`` ``[batch, seq, vocab]`` and ``cross_entropy`` over it, pads
  masked out afterwards (the lens before the loss was chunked);
- chunked: the decoder's hidden states, the LM head and softmax only at predicted positions, a
  few hundred positions at a time (:func:`lorascope.lenses.forgetting.token_nll_sum`).

Prints the median milliseconds per batch, the peak resident memory above the level before each
call (sampled every millisecond from ``/proc/self/statm``; torch's CPU allocations are invisible to
``tracemalloc``), their ratios, and the largest relative difference between the two losses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lorascope.lenses.forgetting import token_nll_sum

PAGE = os.sysconf("SC_PAGE_SIZE")


def full_logits_nll_sum(lm: Any, input_ids: Any, attention_mask: Any) -> tuple[float, int]:
    """The lens's loss before it was chunked, as it was: every position's logits ``[batch, seq, vocab]`` at once."""
    logits = lm(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    targets = input_ids[:, 1:]
    mask = attention_mask[:, 1:].bool()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return float(nll[mask].double().sum()), int(mask.sum())


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """Peak resident memory above the level at entry, sampled by a thread every millisecond (bytes)."""

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def extra(self) -> int:
        return self.peak - self.start


def batches(n: int, batch_size: int, seq: int, vocab: int, seed: int) -> list[tuple[Any, Any]]:
    """``n`` batches of ``(input_ids, attention_mask)``, each ``[batch_size, seq]``, right-padded."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch_size, seq), generator=generator)
        lengths = torch.randint(8, seq + 1, (batch_size,), generator=generator)
        mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
        out.append((ids, mask))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=args.layers,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         tie_word_embeddings=False)
    lm = LlamaForCausalLM(config).eval()
    data = batches(args.batches, args.batch_size, args.seq, config.vocab_size, seed=1)
    real = sum(int(m[:, 1:].sum()) for _, m in data)
    paths: dict[str, Callable[[Any, Any, Any], tuple[float, int]]] = {
        "full logits": full_logits_nll_sum, "chunked": token_nll_sum}
    times: dict[str, list[float]] = {name: [] for name in paths}
    peaks: dict[str, int] = {name: 0 for name in paths}
    losses: dict[str, list[float]] = {name: [] for name in paths}
    with torch.inference_mode():
        for ids, mask in data[:1]:  # warm-up: first-call allocations and kernel selection
            for fn in paths.values():
                fn(lm, ids, mask)
        for repeat in range(args.repeats):
            for name in (list(paths) if repeat % 2 == 0 else list(paths)[::-1]):
                for ids, mask in data:
                    with PeakRss() as peak:
                        start = time.perf_counter()
                        total, count = paths[name](lm, ids, mask)
                        times[name].append(time.perf_counter() - start)
                    peaks[name] = max(peaks[name], peak.extra)
                    if repeat == 0:
                        losses[name].append(total / count)
    print(f"random Llama, vocab {config.vocab_size}, hidden {config.hidden_size}, {args.layers} layers; "
          f"batches of {args.batch_size} x {args.seq} tokens, {real / (args.batches * args.batch_size * (args.seq - 1)):.0%} "
          f"of positions predicted (the rest padding); torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name in paths:
        print(f"  {name:12s} {1000 * statistics.median(times[name]):8.0f} ms per batch (median of "
              f"{len(times[name])}), peak memory +{peaks[name] / 2**20:6.0f} MiB")
    old, new = "full logits", "chunked"
    print(f"  chunked / full logits: time {statistics.median(times[new]) / statistics.median(times[old]):.2f}x, "
          f"peak memory {peaks[new] / max(peaks[old], 1):.2f}x")
    diff = max(abs(a - b) / abs(b) for a, b in zip(losses[new], losses[old], strict=True))
    print(f"  largest relative difference between the two mean losses: {diff:.1e}")


if __name__ == "__main__":
    main()
