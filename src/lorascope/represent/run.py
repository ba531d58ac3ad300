"""``run_represent``: pooled layer-wise representations of one model on a task's fixed sample set.

The sample set is the first ``n_samples`` dev examples of a deterministic subset (``data_seed``),
identified by id; base and fine-tuned models get identical token ids (checked through the
input fingerprint stored with the result).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
from safetensors import SafetensorError

from lorascope.artifacts import check_output_path
from lorascope.data import get_task, load_split, subsample, with_label_set
from lorascope.data.tokenize import tokenize_dataset
from lorascope.models import LoadedModel, prepare_for_method
from lorascope.represent.config import RepresentConfig
from lorascope.represent.encode import Encoder, load_for_encoding
from lorascope.represent.extract import Representations, input_fingerprint, model_fingerprint
from lorascope.represent.store import load_representations, read_metadata, save_representations
from lorascope.run_folder import RunFolder

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def load_for_representation(cfg: RepresentConfig, label_names: tuple[str, ...]) -> LoadedModel:
    """A training run folder (has metrics.json) or a base model, on ``cfg.device``; optionally LoRA at init."""
    loaded = load_for_encoding(cfg.model, cfg.device, label_names=label_names)
    if cfg.lora_init and not RunFolder.holds_run(cfg.model):
        # A base model (not a run folder): load_classifier's model, not wrapped yet.
        loaded.model, _ = prepare_for_method(cast("PreTrainedModel", loaded.model), "lora")
    return loaded


def run_represent(cfg: RepresentConfig, out: Path | str | None = None, *, progress: bool = True) -> Representations:
    """Extract (and save to ``out`` as safetensors when given), on ``cfg.device`` in ``cfg.precision``.

    A file already at ``out`` is reused only when its stored cache key equals this one
    (:func:`cache_key`: samples, their order, token ids, weights, settings, compute dtype) and it
    holds the requested poolings; otherwise it is recomputed and replaced. The model is let go
    (its device memory given back) before this returns.
    """
    if out is not None:
        check_output_path(Path(out), folder=False)
    spec = with_label_set(get_task(cfg.task), cfg.data_dir)
    samples = subsample(load_split(spec, cfg.split, cfg.data_dir), cfg.n_samples, cfg.data_seed)
    if cfg.order_seed is not None:
        samples = samples.select(np.random.default_rng(cfg.order_seed).permutation(len(samples)).tolist())
    with Encoder(load_for_representation(cfg, spec.label_names), precision=cfg.precision) as enc:
        loaded = enc.loaded
        tokenised = tokenize_dataset(samples, loaded.tokenizer, is_pair=spec.is_pair, is_decoder=loaded.is_decoder,
                                     max_length=cfg.max_length, source=f"task {spec.name}, split {cfg.split}")
        ids = list(tokenised["id"])
        key = cache_key(cfg, spec.name, ids, input_fingerprint(tokenised), model_fingerprint(loaded.model),
                        dtype=str(enc.dtype).removeprefix("torch."))
        if out is not None and stored_key_matches(Path(out), key, cfg.poolings):
            return load_representations(Path(out))
        states = enc.extract(tokenised, poolings=tuple(cfg.poolings), batch_size=cfg.batch_size, progress=progress)
        meta = {**key, "model": cfg.model, "is_decoder": str(loaded.is_decoder), "device": str(enc.device),
                "compute_dtype": str(enc.dtype).removeprefix("torch."), "cache_key": json.dumps(key, sort_keys=True)}
    reps = Representations(states=states, ids=ids, meta=meta)
    if out is not None:
        save_representations(reps, Path(out))
    return reps


def cache_key(cfg: RepresentConfig, task: str, ids: list[str], inputs: str, weights: str,
              dtype: str = "float32") -> dict[str, str]:
    """Everything that changes the extracted numbers, as strings.

    The sample ids in order (their hash), the token ids of every sample (``input_fingerprint``:
    tokenizer and ``max_length`` act through it), the model's weights (``model_fingerprint``: a
    retrained run or another base changes it), the settings that select samples, and the compute
    dtype when it is not float32 (float32 extractions made before the setting existed keep their key:
    the device does not change float32 numbers beyond rounding, bf16 does).
    """
    key = {
        "task": task,
        "split": cfg.split,
        "n_samples": str(len(ids)),
        "data_seed": str(cfg.data_seed),
        "order_seed": str(cfg.order_seed),
        "max_length": str(cfg.max_length),
        "ids_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16],
        "input_fingerprint": inputs,
        "model_fingerprint": weights,
        "lora_init": str(cfg.lora_init),
    }
    if dtype != "float32":
        key["compute_dtype"] = dtype
    return key


def stored_key_matches(path: Path, key: dict[str, str], poolings: Collection[str]) -> bool:
    """A stored representation file made with exactly ``key`` that holds every requested pooling."""
    if not path.is_file():
        return False
    try:
        meta = read_metadata(path)
    except (OSError, ValueError, SafetensorError):  # a damaged or foreign file is simply recomputed
        return False
    stored = json.loads(meta.get("cache_key", "{}"))
    return stored == key and set(poolings) <= set(meta.get("poolings", "").split(","))
