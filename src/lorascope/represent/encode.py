"""``encode``: pooled hidden states of every layer for a list of texts, from a base model or a run."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from lorascope.data.examples import texts_to_examples
from lorascope.data.tokenize import tokenize_dataset
from lorascope.models import load_classifier, load_run
from lorascope.models.load import LoadedModel
from lorascope.represent.extract import extract
from lorascope.run_folder import RunFolder


def encode(
    model_or_run: str | Path,
    texts: list[str] | list[list[str]] | list[tuple[str, str]],
    *,
    pooling: Literal["mean", "head_token"] = "mean",
    max_length: int = 384,
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """The representations drift compares, for any texts.

    Args:
        model_or_run: a base model (alias, folder, Hub id) or a training run folder.
        texts: single texts, or ``[text_a, text_b]`` pairs (all of one kind).
        pooling: ``mean`` (masked mean over tokens) or ``head_token`` (the token the head reads:
            [CLS] for encoders, the last real token for decoders).
        max_length: truncation length in tokens.
        batch_size: texts per forward pass.
        progress: show a progress bar.

    Returns:
        float32 ``[n_layers + 1, len(texts), hidden_size]``: the embeddings, then every layer's output.
    """
    if RunFolder.holds_run(model_or_run):
        loaded = load_run(model_or_run)
    else:
        loaded = load_classifier(str(model_or_run), ("LABEL_0", "LABEL_1"), seed=0)  # the head is not used
    return encode_loaded(loaded, texts, pooling=pooling, max_length=max_length, batch_size=batch_size,
                         progress=progress)


def encode_loaded(
    loaded: LoadedModel,
    texts: list[str] | list[list[str]] | list[tuple[str, str]],
    *,
    pooling: Literal["mean", "head_token"] = "mean",
    max_length: int = 384,
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """:func:`encode` for a model already loaded (one load for many calls); same arguments and result."""
    examples, is_pair = texts_to_examples(list(texts))
    tokenised = tokenize_dataset(examples, loaded.tokenizer, is_pair=is_pair, is_decoder=loaded.is_decoder,
                                 max_length=max_length, source="texts")
    states = extract(loaded.model, loaded.tokenizer, tokenised, is_decoder=loaded.is_decoder, batch_size=batch_size,
                     poolings=(pooling,), progress=progress)
    return states[pooling]
