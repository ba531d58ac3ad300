"""Texts -> token ids the way the benchmark and training tokenise them, and padded batches.

Requests are tokenised one by one (unpadded) and padded only when the micro-batcher has put rows
of several requests together, so each forward pass pads to its own longest row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from lorascope.data.tokenize import MODEL_INPUTS, encode_decoder, encode_encoder

Features = dict[str, list[int]]


@dataclass
class TextEncoder:
    """Tokenises single texts and pairs for one base model.

    Args:
        tokenizer: The base model's tokenizer, set up the protocol's way (decoders: EOS pads on the right).
        is_decoder: Llama-style pair format ``a <eos> b`` rather than the tokenizer's pair encoding.
        max_length: Truncation length in tokens.
    """

    tokenizer: PreTrainedTokenizerBase
    is_decoder: bool
    max_length: int
    _collate: DataCollatorWithPadding = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._collate = DataCollatorWithPadding(self.tokenizer, padding="longest")

    def encode(self, inputs: list[str | list[str]]) -> list[Features]:
        """One unpadded feature dict per input (a str, or a [text_a, text_b] pair)."""
        encode = encode_decoder if self.is_decoder else encode_encoder
        rows = []
        for item in inputs:
            a, b = (item, None) if isinstance(item, str) else (item[0], item[1])
            enc = encode(self.tokenizer, [a], None if b is None else [b], self.max_length)
            rows.append({k: v[0] for k, v in enc.items() if k in MODEL_INPUTS})
        return rows

    def pad(self, rows: list[Features]) -> dict[str, torch.Tensor]:
        """Pad rows to the longest: ``input_ids``, ``attention_mask`` (maybe ``token_type_ids``), each [rows, seq]."""
        return dict(self._collate(rows))
