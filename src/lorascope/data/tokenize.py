"""Tokenisation and batching.

Decoder models (Llama style) see sentence pairs as ``sentence1 <eos> sentence2`` (the
protocol's format), with the tokenizer's BOS first when it normally adds one, and are padded on
the right with EOS; their classification head reads the last non-pad token. Encoder models
(BERT style) use the tokenizer's own pair encoding (``[CLS] a [SEP] b [SEP]``).

Padding is dynamic (per batch, to the longest row) by default: with a masked, mean-pooled or
last-token read-out the padded positions never influence the result, which the tests prove, and
short GLUE sentences then cost a fraction of padding to 384.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import datasets
import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _truncate_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer part until both fit (``longest_first``)."""
    la, lb = len(a), len(b)
    while la + lb > budget:
        if la >= lb:
            la -= 1
        else:
            lb -= 1
    return a[:la], b[:lb]


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def encode_decoder(
    tokenizer: PreTrainedTokenizerBase, text_a: list[str], text_b: list[str] | None, max_length: int
) -> dict[str, list[list[int]]]:
    """``[bos] a <eos> b`` (pairs) or ``[bos] a`` (single), truncated to ``max_length`` tokens."""
    bos = [tokenizer.bos_token_id] if _adds_bos(tokenizer) else []
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("decoder tokenizer has no eos_token; it is needed as separator and pad")
    enc_a = tokenizer(text_a, add_special_tokens=False)["input_ids"]
    enc_b = tokenizer(text_b, add_special_tokens=False)["input_ids"] if text_b is not None else None
    out = []
    for i, a in enumerate(enc_a):
        if enc_b is None:
            ids = bos + a[: max_length - len(bos)]
        else:
            a_cut, b_cut = _truncate_pair(a, enc_b[i], max_length - len(bos) - 1)
            ids = bos + a_cut + [eos] + b_cut
        out.append(ids)
    return {"input_ids": out, "attention_mask": [[1] * len(x) for x in out]}


def encode_encoder(
    tokenizer: PreTrainedTokenizerBase, text_a: list[str], text_b: list[str] | None, max_length: int
) -> dict[str, list[list[int]]]:
    """The tokenizer's own single/pair encoding, ``longest_first`` truncation."""
    enc = tokenizer(text_a, text_b, truncation=True, max_length=max_length)
    return {k: enc[k] for k in MODEL_INPUTS if k in enc}


def tokenize_dataset(
    ds: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    is_pair: bool,
    is_decoder: bool,
    max_length: int,
    keep_columns: tuple[str, ...] = ("id", "label"),
) -> datasets.Dataset:
    """Add ``input_ids``/``attention_mask`` (and ``token_type_ids`` for BERT) to the uniform dataset.

    Returns a dataset with ``keep_columns`` plus the model inputs; ``label`` is renamed ``labels``
    (the name Hugging Face models take).
    """
    encode = encode_decoder if is_decoder else encode_encoder

    def _map(batch: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        return encode(tokenizer, batch["text_a"], batch["text_b"] if is_pair else None, max_length)

    drop = [c for c in ds.column_names if c not in keep_columns]
    out = ds.map(_map, batched=True, remove_columns=drop, desc="tokenising", keep_in_memory=True)
    if "label" in out.column_names:
        out = out.rename_column("label", "labels")
    return out


@dataclass
class CountingCollator:
    """Pads each batch and counts real and padded tokens seen.

    Args:
        tokenizer: provides the pad id and padding side.
        pad_to_max_length: pad every batch to ``max_length`` (the original study's behaviour;
            kept for benchmarks) instead of the longest row.
        max_length: the fixed length used when ``pad_to_max_length``.
    """

    tokenizer: PreTrainedTokenizerBase
    pad_to_max_length: bool = False
    max_length: int | None = None
    real_tokens: int = 0
    padded_tokens: int = 0
    _inner: DataCollatorWithPadding = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._inner = DataCollatorWithPadding(
            self.tokenizer,
            padding="max_length" if self.pad_to_max_length else "longest",
            max_length=self.max_length if self.pad_to_max_length else None,
        )

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        model_features = [{k: v for k, v in f.items() if k in (*MODEL_INPUTS, "labels")} for f in features]
        batch = self._inner(model_features)
        self.real_tokens += int(batch["attention_mask"].sum())
        self.padded_tokens += int(batch["attention_mask"].numel())
        return batch
