"""Texts -> token ids the way the benchmark and training tokenise them, and padded batches.

Requests are tokenised one by one (unpadded) and padded only when the micro-batcher has put rows
of several requests together, so each forward pass pads to its own longest row.

An input the tokenizer cannot use raises :class:`UnusableInput` naming it, before it can reach a
batch: a text without tokens would break the forward pass of every request batched with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from lorascope.data.tokenize import MODEL_INPUTS, TokenlessText, encode_decoder, encode_encoder
from lorascope.errors import LorascopeError
from lorascope.serve.http.inputs import input_name

Features = dict[str, list[int]]


class UnusableInput(LorascopeError):
    """An input the tokenizer turns into nothing usable.

    Attributes:
        code: ``empty_input`` (no tokens) or ``invalid_text`` (the tokenizer refused the text).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


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

    def encode(self, inputs: list[str | list[str]], field: str = "inputs") -> list[Features]:
        """One unpadded feature dict per input (a str, or a [text_a, text_b] pair).

        Args:
            inputs: The texts and pairs.
            field: The request field that held them, for error messages (``inputs[3][1]``).

        Raises:
            UnusableInput: For the first input with a text of no tokens, or one the tokenizer refuses.
        """
        return [self._encode_one(i, item, field) for i, item in enumerate(inputs)]

    def _encode_one(self, index: int, item: str | list[str], field: str) -> Features:
        encode = encode_decoder if self.is_decoder else encode_encoder
        a, b = (item, None) if isinstance(item, str) else (item[0], item[1])
        try:
            enc = encode(self.tokenizer, [a], None if b is None else [b], self.max_length)
        except TokenlessText as err:
            where = input_name(index, None if b is None else err.side, field)
            raise UnusableInput("empty_input", f"{where}: the text has no tokens (only characters the model's "
                                               "tokenizer drops, such as zero-width or control characters)") from None
        except (TypeError, ValueError) as err:  # the tokenizer refused this text; the inputs checks should prevent it
            raise UnusableInput("invalid_text", f"{input_name(index, field=field)}: the tokenizer cannot encode this input "
                                                f"({type(err).__name__})") from None
        return {k: v[0] for k, v in enc.items() if k in MODEL_INPUTS}

    def pad(self, rows: list[Features]) -> dict[str, torch.Tensor]:
        """Pad rows to the longest: ``input_ids``, ``attention_mask`` (maybe ``token_type_ids``), each [rows, seq]."""
        return dict(self._collate(rows))
