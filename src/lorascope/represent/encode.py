"""``Encoder``: a model kept loaded for pooled hidden states of every layer, on any texts; ``encode``
for one call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np

from lorascope.data.examples import texts_to_examples
from lorascope.data.tokenize import tokenize_dataset
from lorascope.models.device import Precision, compute_dtype, model_device, release
from lorascope.models.load import LoadedModel, as_device, load_classifier, load_run
from lorascope.represent.extract import extract
from lorascope.represent.pooling import POOLINGS
from lorascope.run_folder import RunFolder

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedModel

Texts = list[str] | list[list[str]] | list[tuple[str, str]]
# The head is never read by an extraction: any two labels give the backbone's states.
ANY_LABELS = ("LABEL_0", "LABEL_1")


def load_for_encoding(model_or_run: str | Path, device: torch.device | str, *,
                      label_names: tuple[str, ...] = ANY_LABELS, lora_init: bool = False) -> LoadedModel:
    """A training run folder (it has a record) or a base model, on ``device``; a base optionally wrapped
    in a fresh LoRA adapter (B = 0), the pipeline control."""
    if RunFolder.holds_run(model_or_run):
        return load_run(model_or_run, device=device)
    loaded = load_classifier(str(model_or_run), label_names, seed=0, device=device)
    if lora_init:
        from lorascope.models.adapt import prepare_for_method

        loaded.model, _ = prepare_for_method(cast("PreTrainedModel", loaded.model), "lora")  # not wrapped yet
        loaded.model.eval()
    return loaded


class Encoder:
    """One model, loaded once, that turns texts into the representations drift compares.

    Example::

        with Encoder("runs/demo", device="auto") as enc:
            a = enc.encode(["a gripping film"])            # [layers + 1, 1, d]
            b = enc.encode([["a man sings", "someone sings"]])

    Args:
        model: a base model (alias, folder, Hub id), a training run folder, or a model already
            loaded (its device is kept).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or a ``torch.device``.
        precision: the forward pass's precision (``auto``: bf16 on a CUDA device that supports it,
            float32 elsewhere); pooling is float32 either way.
        label_names: the head's labels when a base model is loaded (never read by an extraction).
        lora_init: wrap a base model in a fresh LoRA adapter (B = 0).
    """

    def __init__(self, model: str | Path | LoadedModel, *, device: torch.device | str = "auto",
                 precision: Precision = "auto", label_names: tuple[str, ...] = ANY_LABELS,
                 lora_init: bool = False) -> None:
        self._held: LoadedModel | None
        if isinstance(model, LoadedModel):
            self._held = model
            self.device = model_device(model.model)
        else:
            self.device = as_device(device)
            self._held = load_for_encoding(model, self.device, label_names=label_names, lora_init=lora_init)
        self.dtype = compute_dtype(precision, self.device)

    @property
    def loaded(self) -> LoadedModel:
        """The model, its tokenizer and what it is (a closed encoder has none)."""
        if self._held is None:
            raise RuntimeError("this Encoder was closed")
        return self._held

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    def extract(self, tokenised: datasets.Dataset, *, poolings: tuple[str, ...] = POOLINGS, batch_size: int = 32,
                progress: bool = False) -> dict[str, np.ndarray]:
        """Pooled states of a tokenised sample set: pooling -> float32 ``[n_layers + 1, n, d]``, rows in its order."""
        loaded = self.loaded
        return extract(loaded.model, loaded.tokenizer, tokenised, is_decoder=loaded.is_decoder, batch_size=batch_size,
                       poolings=poolings, progress=progress, dtype=self.dtype)

    def encode(self, texts: Texts, *, pooling: Literal["mean", "head_token"] = "mean", max_length: int = 384,
               batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """The representations of ``texts`` (single texts, or ``[text_a, text_b]`` pairs, all of one kind).

        Args:
            pooling: ``mean`` (masked mean over tokens) or ``head_token`` (the token the head reads:
                [CLS] for encoders, the last real token for decoders).
            max_length: truncation length in tokens.
            batch_size: texts per forward pass (on CUDA, lowered to what fits in free memory).
            progress: show a progress bar.

        Returns:
            float32 ``[n_layers + 1, len(texts), hidden_size]``: the embeddings, then every layer's output.
        """
        loaded = self.loaded
        # list() takes any iterable of texts; a list of them is still of the kind ``texts`` is.
        examples, is_pair = texts_to_examples(cast(Texts, list(texts)))
        tokenised = tokenize_dataset(examples, loaded.tokenizer, is_pair=is_pair, is_decoder=loaded.is_decoder,
                                     max_length=max_length, source="texts")
        return self.extract(tokenised, poolings=(pooling,), batch_size=batch_size, progress=progress)[pooling]

    def close(self) -> None:
        """Let the model go and give its device memory back (the next model of a stage needs it)."""
        self._held = None
        release(self.device)

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode(
    model_or_run: str | Path,
    texts: Texts,
    *,
    pooling: Literal["mean", "head_token"] = "mean",
    max_length: int = 384,
    batch_size: int = 32,
    progress: bool = False,
    device: str = "auto",
    precision: Precision = "auto",
) -> np.ndarray:
    """The representations drift compares, for any texts, in one call (loads the model each time:
    keep an :class:`Encoder` for many calls).

    Args:
        model_or_run: a base model (alias, folder, Hub id) or a training run folder.
        texts, pooling, max_length, batch_size, progress: as :meth:`Encoder.encode`.
        device, precision: as :class:`Encoder`.

    Returns:
        float32 ``[n_layers + 1, len(texts), hidden_size]``: the embeddings, then every layer's output.
    """
    with Encoder(model_or_run, device=device, precision=precision) as enc:
        return enc.encode(texts, pooling=pooling, max_length=max_length, batch_size=batch_size, progress=progress)
