"""The requests every strategy is timed on: real dev-set rows, tokenised, in fixed padded batches.

Each adapter's requests come from its task's dev set. The pool interleaves the adapters' rows
(row ``j`` belongs to adapter ``j mod n``) in a seeded random order, so batches mix lengths and
tasks the way a shared server would see them. Batch ``k`` at batch size ``b`` is pool rows
``k*b .. k*b+b-1`` (wrapping round), padded to its longest row; every strategy gets exactly the
same tensors, and only which adapter serves which row differs between strategies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lorascope.data import load_split
from lorascope.data.tasks import TaskSpec
from lorascope.data.tokenize import MODEL_INPUTS, CountingCollator, tokenize_dataset
from lorascope.models.base_recipe import BaseModelSpec


@dataclass(frozen=True)
class PoolRow:
    """One tokenised dev row and the adapter whose task it comes from.

    Attributes:
        adapter: Adapter name.
        features: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` for BERT), unpadded lists.
        text: The row as written: a text, or ``(text_a, text_b)`` for a pair task (what an HTTP
            endpoint is sent; it tokenises ``text`` into ``features`` itself).
    """

    adapter: str
    features: dict[str, list[int]]
    text: str | tuple[str, str] = ""


@dataclass
class Batch:
    """One request: a padded batch on the benchmark's device.

    Attributes:
        inputs: Model inputs, each shape [batch, seq] (``input_ids``, ``attention_mask``, maybe ``token_type_ids``).
        row_adapters: The adapter each row's task belongs to, length batch (used by mixed-batch strategies).
        real_tokens: Non-padding tokens in the batch.
    """

    inputs: dict[str, torch.Tensor]
    row_adapters: list[str]
    real_tokens: int

    @property
    def size(self) -> int:
        return len(self.row_adapters)

    @property
    def seq_len(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


def build_pool(
    adapter_tasks: dict[str, TaskSpec],
    base: BaseModelSpec,
    n_rows: int,
    max_length: int,
    data_dir: str | None,
    seed: int,
) -> list[PoolRow]:
    """Tokenise each adapter's dev set and interleave ``n_rows`` rows (each dev set cycled if too short).

    Args:
        adapter_tasks: Adapter name -> task, in adapter order.
        base: Supplies the tokenizer and whether the model is a decoder.
        n_rows: Rows wanted in the pool.
        max_length: Truncation length in tokens.
        data_dir: GLUE folder (None: ``$GLUE_DIR``, else the Hub).
        seed: Seeds each dev set's row order.

    Raises:
        DataError: If a dev set cannot be loaded.
    """
    per_adapter = math.ceil(n_rows / len(adapter_tasks))
    rows_by_adapter: dict[str, list[PoolRow]] = {}
    for i, (name, spec) in enumerate(adapter_tasks.items()):
        split = load_split(spec, "validation", data_dir)
        # tokenize_dataset maps row for row (nothing is filtered), so row j of ds is row j of split.
        ds = tokenize_dataset(
            split, base.tokenizer, is_pair=spec.is_pair, is_decoder=base.is_decoder, max_length=max_length, keep_columns=(),
        )
        order = np.random.default_rng([seed, i]).permutation(len(ds))
        picked = [int(order[j % len(order)]) for j in range(per_adapter)]
        columns = [c for c in MODEL_INPUTS if c in ds.column_names]
        data = {c: ds[c] for c in columns}
        text_a, text_b = split["text_a"], split["text_b"] if spec.is_pair else None
        rows_by_adapter[name] = [
            PoolRow(name, {c: data[c][j] for c in columns}, text_a[j] if text_b is None else (text_a[j], text_b[j]))
            for j in picked
        ]
    names = list(adapter_tasks)
    return [rows_by_adapter[names[j % len(names)]][j // len(names)] for j in range(n_rows)]


def pad_rows(rows: list[PoolRow], base: BaseModelSpec, device: torch.device) -> Batch:
    """One padded batch of ``rows`` (padded to the longest) on ``device``."""
    padded = CountingCollator(base.tokenizer)([r.features for r in rows])
    inputs = {key: value.to(device) for key, value in padded.items() if key in MODEL_INPUTS}
    return Batch(inputs, [r.adapter for r in rows], int(inputs["attention_mask"].sum()))


def make_batches(pool: list[PoolRow], batch_size: int, n_batches: int, base: BaseModelSpec, device: torch.device) -> list[Batch]:
    """``n_batches`` consecutive padded batches of ``batch_size`` pool rows (wrapping round the pool)."""
    return [pad_rows([pool[(k * batch_size + i) % len(pool)] for i in range(batch_size)], base, device)
            for k in range(n_batches)]


def request_stats(batches: list[Batch]) -> dict[str, float]:
    """Mean padded length of ``batches`` and the share of their tokens that are not padding."""
    padded = sum(b.size * b.seq_len for b in batches)
    return {"mean_seq_len": float(np.mean([b.seq_len for b in batches])),
            "real_token_fraction": sum(b.real_tokens for b in batches) / padded}
