"""Tokenisation and batching.

Decoder models (Llama style) see sentence pairs as ``sentence1 <eos> sentence2`` (the
protocol's format), with the tokenizer's BOS first when it normally adds one, and are padded on
the right with EOS; their classification head reads the last non-pad token. Encoder models
(BERT style) use the tokenizer's own pair encoding (``[CLS] a [SEP] b [SEP]``).

Padding is dynamic (per batch, to the longest row) by default: with a masked, mean-pooled or
last-token read-out the padded positions never influence the result, which the tests prove, and
short GLUE sentences then cost a fraction of padding to 384.

Every text must contribute at least one token of its own. A text made only of characters the
tokenizer drops (zero-width or control characters, for instance) would leave a decoder row with
no tokens at all (its forward pass fails) and an encoder row with only ``[CLS] [SEP]`` (a
prediction that says nothing about the text), so the encoders raise :class:`TokenlessText`
and the callers turn it into an error naming the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import datasets
import torch
from datasets.fingerprint import Hasher
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from lorascope.errors import DataError

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TEXT_COLUMNS = ("text_a", "text_b")


class TokenlessText(DataError):
    """A text that the tokenizer turns into no tokens at all.

    Attributes:
        row: Index of the offending row in the batch given to the encoder.
        side: 0 for the first text (``text_a``), 1 for the second text of a pair.
    """

    def __init__(self, row: int, side: int) -> None:
        super().__init__(f"row {row}: {TEXT_COLUMNS[side]} tokenises to no tokens")
        self.row, self.side = row, side


def _require_tokens(counts: list[list[int]]) -> None:
    """Raise :class:`TokenlessText` for the first row with a text of no tokens.

    Args:
        counts: Tokens per text, one list per side (``[a]`` or ``[a, b]``), rows in batch order.
    """
    for row, per_side in enumerate(zip(*counts)):
        for side, n in enumerate(per_side):
            if n == 0:
                raise TokenlessText(row, side)


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
    """``[bos] a <eos> b`` (pairs) or ``[bos] a`` (single), truncated to ``max_length`` tokens.

    Raises:
        TokenlessText: When a text (either side of a pair) tokenises to no tokens.
    """
    bos = [tokenizer.bos_token_id] if _adds_bos(tokenizer) else []
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("decoder tokenizer has no eos_token; it is needed as separator and pad")
    enc_a = tokenizer(text_a, add_special_tokens=False)["input_ids"]
    enc_b = tokenizer(text_b, add_special_tokens=False)["input_ids"] if text_b is not None else None
    _require_tokens([[len(x) for x in enc] for enc in (enc_a, enc_b) if enc is not None])
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
    """The tokenizer's own single/pair encoding, ``longest_first`` truncation.

    Raises:
        TokenlessText: When a text (either side of a pair) contributes no tokens besides the
            special ones (a side truncated away entirely by a tiny ``max_length`` counts too).
    """
    enc = tokenizer(text_a, text_b, truncation=True, max_length=max_length)
    _require_tokens(_text_token_counts(tokenizer, enc, text_a, text_b))
    return {k: enc[k] for k in MODEL_INPUTS if k in enc}


def _text_token_counts(
    tokenizer: PreTrainedTokenizerBase, enc: Any, text_a: list[str], text_b: list[str] | None
) -> list[list[int]]:
    """Tokens of each text, per side (``[counts_a]`` or ``[counts_a, counts_b]``), special tokens excluded."""
    sides = 1 if text_b is None else 2
    if getattr(enc, "is_fast", False):  # fast tokenizers say which text every token came from: no second pass
        ids = [enc.sequence_ids(i) for i in range(len(text_a))]
        return [[row.count(side) for row in ids] for side in range(sides)]
    texts = [text_a] if text_b is None else [text_a, text_b]
    return [[len(x) for x in tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]


def tokenize_dataset(
    ds: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    is_pair: bool,
    is_decoder: bool,
    max_length: int,
    keep_columns: tuple[str, ...] = ("id", "label"),
    source: str | None = None,
) -> datasets.Dataset:
    """Add ``input_ids``/``attention_mask`` (and ``token_type_ids`` for BERT) to the uniform dataset.

    Args:
        ds: The uniform dataset (``id``, ``text_a``, ``text_b``, ``label``).
        tokenizer: The model's tokenizer.
        is_pair: Encode ``text_a`` and ``text_b`` as a pair.
        is_decoder: Use the decoder format ``[bos] a <eos> b``.
        max_length: Truncation length in tokens.
        keep_columns: Columns kept besides the model inputs.
        source: What the rows are, for error messages (e.g. ``"task sst2, split train"``).

    Returns:
        A dataset with ``keep_columns`` plus the model inputs; ``label`` is renamed ``labels``
        (the name Hugging Face models take).

    Raises:
        DataError: When a row's text tokenises to no tokens, naming the row's example id
            (``<split>-<row number or id column>``) and ``source``.
    """
    encode = encode_decoder if is_decoder else encode_encoder

    def _map(batch: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        text_b = batch["text_b"] if is_pair else None
        try:
            return encode(tokenizer, batch["text_a"], text_b, max_length)
        except TokenlessText as err:
            raise _tokenless_row_error(batch, err, source) from None

    drop = [c for c in ds.column_names if c not in keep_columns]
    # The result stays in memory and is never read back from a cache, so its fingerprint only has to
    # tell different inputs apart. Left to itself, `datasets` fingerprints the transform by pickling
    # its closure, the tokenizer included: 120 thousand objects, 1.5-2.5 s a call on 2 cores, the
    # largest fixed cost of a small training run.
    fingerprint = Hasher.hash([ds._fingerprint, type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer),
                               tokenizer.all_special_ids, tokenizer.padding_side, tokenizer.truncation_side,
                               encode.__name__, is_pair, max_length, sorted(drop)])
    out = ds.map(_map, batched=True, remove_columns=drop, desc="tokenising", keep_in_memory=True,
                 new_fingerprint=fingerprint)
    if "label" in out.column_names:
        out = out.rename_column("label", "labels")
    return out


def _preview(text: str, limit: int = 40) -> str:
    """A short one-line ``repr`` of ``text``: control, zero-width and surrogate characters show as escapes."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _tokenless_row_error(batch: dict[str, list[Any]], err: TokenlessText, source: str | None) -> DataError:
    column = TEXT_COLUMNS[err.side]
    example = batch["id"][err.row] if "id" in batch else f"#{err.row}"
    where = f"{source}: " if source else ""
    return DataError(
        f"{where}example '{example}': {column} {_preview(batch[column][err.row])} tokenises to no tokens "
        "(it holds only characters the model's tokenizer drops, such as zero-width or control characters); "
        "fix or remove the row"
    )


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
