"""Extract layer-wise pooled representations of a model on a fixed, identified sample set."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import datasets
import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress

from lorascope.data.tokenize import CountingCollator
from lorascope.errors import ConfigError, DataError
from lorascope.models.device import free_memory
from lorascope.represent.pooling import POOLINGS, head_token, masked_mean, pooling_mask

if TYPE_CHECKING:
    from transformers import PreTrainedConfig, PreTrainedTokenizerBase

    from lorascope.models.adapt import AdaptedModel

log = logging.getLogger(__name__)

# Share of the free device memory an extraction plans to use: the allocator fragments, and
# kernels take workspace the estimate does not count.
MEMORY_HEADROOM = 0.8


@dataclass
class Representations:
    """Pooled hidden states of one model on one sample set.

    Attributes:
        states: pooling name -> float32 array [n_layers + 1, n_samples, d] (index 0 is the
            embedding output, index i the output of block i).
        ids: example ids, row order of every array.
        meta: provenance strings (model fingerprint, input fingerprint, task, max_length …).
    """

    states: dict[str, np.ndarray]
    ids: list[str]
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(next(iter(self.states.values())).shape[0])


def input_fingerprint(ds: datasets.Dataset) -> str:
    """sha256 of every sample's token ids in order: two extractions are comparable only if equal."""
    h = hashlib.sha256()
    for ids in ds["input_ids"]:
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over parameter names, shapes and values (adapters included): identifies the weights."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes() if p.numel() else b"")
    return h.hexdigest()[:16]


def check_no_empty_rows(ds: datasets.Dataset) -> None:
    """Refuse a tokenised sample set with a row of no tokens.

    Such a row has nothing to pool: its mean is silently a zero vector and a decoder's head token is
    read from a pad position (or, when every row of a batch is empty, a decoder's forward pass fails).
    ``tokenize_dataset`` already refuses texts without tokens; this guards sample sets tokenised
    some other way.

    Raises:
        DataError: Naming the first such row's example id (its position when there is no ``id`` column).
    """
    for i, ids in enumerate(ds["input_ids"]):
        if len(ids) == 0:
            example = ds[i]["id"] if "id" in ds.column_names else f"#{i}"
            raise DataError(f"example '{example}': no tokens to extract representations from; fix or remove the row")


@torch.inference_mode()
def extract(
    model: AdaptedModel,
    tokenizer: PreTrainedTokenizerBase,
    ds: datasets.Dataset,
    *,
    is_decoder: bool,
    batch_size: int = 32,
    poolings: tuple[str, ...] = POOLINGS,
    pad_to_max_length: bool = False,
    max_length: int | None = None,
    progress: bool = True,
    dtype: torch.dtype | None = None,
) -> dict[str, np.ndarray]:
    """Run ``model`` over tokenised ``ds`` and pool every layer's hidden states.

    Only one batch of token-level states is alive at a time, so memory is bounded by
    ``batch_size × seq × d × (n_layers + 1)`` plus the pooled result ``[n_layers + 1, n, d]``.
    On CUDA the batch size is lowered to what fits in the free memory (:func:`fitting_batch_size`).

    Args:
        dtype: the forward pass's compute dtype under autocast (bf16 on a GPU, as training's mixed
            precision); None or the parameters' own dtype: no autocast. Pooling is float32 either way.

    Returns:
        pooling name -> float32 [n_layers + 1, n_samples, d], rows in ``ds`` order.

    Raises:
        DataError: When a row has no tokens (see :func:`check_no_empty_rows`).
        ConfigError: Not even one sample fits in the device's free memory, or the device ran out of it.
    """
    unknown = set(poolings) - set(POOLINGS)
    if unknown:
        raise ValueError(f"unknown pooling {sorted(unknown)} (expected {list(POOLINGS)})")
    check_no_empty_rows(ds)
    model.eval()
    first = next(model.parameters())
    device = first.device
    collate = CountingCollator(tokenizer, pad_to_max_length, max_length)
    n = len(ds)
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in ds.column_names]
    rows = ds.select_columns(columns)
    autocast = dtype is not None and dtype != first.dtype
    longest = max_length if pad_to_max_length and max_length else max(len(ids) for ids in ds["input_ids"])
    batch_size = fitting_batch_size(model, batch_size, longest, device, dtype if autocast and dtype is not None else first.dtype,
                                    autocast=autocast)
    amp = torch.autocast(device.type, dtype=dtype) if autocast else contextlib.nullcontext()
    # transient: the bar disappears when done; off a terminal (a log file) there is none at all.
    console = Console(stderr=True)
    try:
        with amp, Progress(transient=True, console=console, disable=not (progress and console.is_terminal)) as bar:
            step = bar.add_task("extracting", total=n)
            out = _extract_batches(model, rows, collate, n, batch_size, device, poolings, is_decoder,
                                   lambda k: bar.advance(step, k))
    except torch.cuda.OutOfMemoryError:
        raise ConfigError(f"extraction ran out of memory on {device} at batch_size={batch_size} and {longest} tokens "
                          "a sample: lower batch_size or max_length, or use device=cpu") from None
    assert out is not None, "empty sample set"
    return out


def activation_bytes_per_sample(config: PreTrainedConfig, seq: int, dtype: torch.dtype) -> int:
    """Bytes one sample of ``seq`` tokens needs during an extraction's forward pass.

    The hidden states of every layer are kept until pooled (``output_hidden_states``); besides,
    one layer works at a time: q, k, v and the attention output (4·d), the MLP's intermediate
    activations (3 × its width: up, gate and their product) and, for an attention that
    materialises them, the scores (heads × seq).

    Args:
        config: the model's transformers config (``hidden_size``, ``num_hidden_layers`` …).
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    d = int(getattr(text, "hidden_size", 0) or getattr(text, "dim", 0) or 768)
    layers = int(getattr(text, "num_hidden_layers", 0) or getattr(text, "n_layers", 0) or 12)
    inter = int(getattr(text, "intermediate_size", 0) or getattr(text, "hidden_dim", 0) or 4 * d)
    heads = int(getattr(text, "num_attention_heads", 0) or getattr(text, "n_heads", 0) or 12)
    per_token = (layers + 1) * d + 4 * d + 3 * inter + heads * seq
    return int(seq * per_token * torch.finfo(dtype).bits // 8)


def fitting_batch_size(model: AdaptedModel, requested: int, seq: int, device: torch.device, dtype: torch.dtype,
                       *, autocast: bool = False) -> int:
    """``requested``, or fewer samples per batch when that many do not fit in the device's free memory.

    Only CUDA reports its free memory; elsewhere the batch size is taken as given.

    Args:
        seq: the longest sample's token count (every batch is padded to at most that).
        autocast: the forward pass runs under autocast, which keeps a ``dtype`` copy of every weight.

    Raises:
        ConfigError: not even one sample fits, naming the settings to lower.
    """
    free = free_memory(device)
    if free is None:
        return requested
    cast_copies = sum(p.numel() for p in model.parameters()) * torch.finfo(dtype).bits // 8 if autocast else 0
    budget = MEMORY_HEADROOM * free - cast_copies
    per_sample = activation_bytes_per_sample(model.config, seq, dtype)
    fits = int(budget // per_sample) if budget > 0 else 0
    if fits < 1:
        raise ConfigError(f"extraction: one sample of {seq} tokens needs about {_mib(per_sample)} on {device} "
                          f"and {_mib(max(budget, 0))} of its free memory are usable: lower max_length, "
                          "or use device=cpu")
    if fits < requested:
        log.info("extraction on %s: batch_size %d lowered to %d to fit in %.1f GiB free", device, requested, fits,
                 free / 2**30)
    return min(requested, fits)


def _mib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _extract_batches(model: AdaptedModel, rows: datasets.Dataset, collate: CountingCollator, n: int, batch_size: int,
                     device: torch.device, poolings: tuple[str, ...], is_decoder: bool,
                     advance: Callable[[int], None]) -> dict[str, np.ndarray] | None:
    """The pooled states of every layer, batch by batch (see :func:`extract`); ``advance(k)`` after each batch."""
    out: dict[str, np.ndarray] | None = None
    for start in range(0, n, batch_size):
        batch = collate([rows[i] for i in range(start, min(start + batch_size, n))])
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = model(**batch, output_hidden_states=True).hidden_states  # (L+1) × [b, seq, d], compute dtype
        mask = pooling_mask(batch)
        if out is None:
            d = hidden[0].shape[-1]
            out = {p: np.empty((len(hidden), n, d), dtype=np.float32) for p in poolings}
        stop = start + mask.shape[0]
        for layer, h in enumerate(hidden):
            if "mean" in out:
                out["mean"][layer, start:stop] = masked_mean(h, mask).cpu().numpy()
            if "head_token" in out:
                out["head_token"][layer, start:stop] = head_token(h, mask, is_decoder).cpu().numpy()
        advance(stop - start)
    return out
