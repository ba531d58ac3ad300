"""``run_represent``: pooled layer-wise representations of one model on a task's fixed sample set.

The sample set is the first ``n_samples`` dev examples of a deterministic subset (``data_seed``),
identified by id; base and fine-tuned models get identical token ids (checked through the
input fingerprint stored with the result).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveInt

from lorascope.config import StrictModel
from lorascope.data import get_task, load_split, subsample, with_label_set
from lorascope.data.tokenize import tokenize_dataset
from lorascope.models import LoadedModel, load_classifier, load_run, prepare_for_method
from lorascope.represent.extract import Representations, extract, input_fingerprint, model_fingerprint
from lorascope.represent.store import read_metadata, save_representations


class RepresentConfig(StrictModel):
    """What to extract, from which model, on which samples."""

    task: str = Field("sst2", description="GLUE task or task YAML file")
    model: str = Field("minilm", description="base model (alias, folder, Hub id) or a training run folder")
    split: str = Field("validation", description="split to draw samples from")
    n_samples: PositiveInt = Field(750, description="samples (all of them when the split is smaller)")
    data_seed: int = Field(0, description="seed of the deterministic sample subset")
    max_length: PositiveInt = Field(384, description="truncation length (must match across compared models)")
    batch_size: PositiveInt = Field(32, description="extraction batch size")
    poolings: list[str] = Field(["mean", "head_token"], description="mean (masked mean over tokens), head_token")
    lora_init: bool = Field(False, description="wrap the base in a fresh LoRA adapter (B = 0): a pipeline control")
    data_dir: str | None = Field(None, description="GLUE folder (default: $GLUE_DIR)")


def load_for_representation(cfg: RepresentConfig, label_names: tuple[str, ...]) -> LoadedModel:
    """A training run folder (has metrics.json) or a base model; optionally LoRA at init."""
    if (Path(cfg.model) / "metrics.json").is_file():
        return load_run(cfg.model)
    loaded = load_classifier(cfg.model, label_names, seed=0)
    if cfg.lora_init:
        loaded.model, _ = prepare_for_method(loaded.model, "lora")
    return loaded


def run_represent(cfg: RepresentConfig, out: Path | str | None = None, *, progress: bool = True) -> Representations:
    """Extract (and save to ``out`` as safetensors when given)."""
    spec = with_label_set(get_task(cfg.task), cfg.data_dir)
    samples = subsample(load_split(spec, cfg.split, cfg.data_dir), cfg.n_samples, cfg.data_seed)
    loaded = load_for_representation(cfg, spec.label_names)
    tokenised = tokenize_dataset(samples, loaded.tokenizer, is_pair=spec.is_pair, is_decoder=loaded.is_decoder,
                                 max_length=cfg.max_length)
    states = extract(loaded.model, loaded.tokenizer, tokenised, is_decoder=loaded.is_decoder,
                     batch_size=cfg.batch_size, poolings=tuple(cfg.poolings), progress=progress)
    reps = Representations(
        states=states,
        ids=list(tokenised["id"]),
        meta={
            "task": spec.name,
            "split": cfg.split,
            "model": cfg.model,
            "lora_init": str(cfg.lora_init),
            "max_length": str(cfg.max_length),
            "model_fingerprint": model_fingerprint(loaded.model),
            "input_fingerprint": input_fingerprint(tokenised),
            "is_decoder": str(loaded.is_decoder),
        },
    )
    if out is not None:
        save_representations(reps, Path(out))
    return reps


def is_reusable(path: Path, cfg: RepresentConfig) -> bool:
    """A stored file made for the same task, split, sample count and max_length."""
    if not path.is_file():
        return False
    meta = read_metadata(path)
    wanted = {"task": get_task(cfg.task).name, "split": cfg.split, "max_length": str(cfg.max_length),
              "model": cfg.model, "lora_init": str(cfg.lora_init)}
    return all(meta.get(k) == v for k, v in wanted.items()) and len(meta.get("ids", "[]")) > 2
