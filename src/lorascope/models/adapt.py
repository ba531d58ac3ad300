"""Make a model trainable by one of the two methods: LoRA (peft) or full fine-tuning.

The two methods share everything else; they differ only here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from peft import LoraConfig, TaskType, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from transformers import PreTrainedModel

from lorascope.errors import ConfigError


@dataclass
class ParamCounts:
    trainable: int
    total: int

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "trainable_percent": round(self.trainable_percent, 4)}


def count_parameters(model: PreTrainedModel) -> ParamCounts:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return ParamCounts(trainable, total)


def default_lora_targets(model_type: str) -> list[str]:
    """PEFT's per-architecture defaults: ``q_proj``/``v_proj`` (Llama), ``query``/``value`` (BERT)."""
    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    if not targets:
        raise ConfigError(f"no default LoRA target modules for model type '{model_type}': set lora_targets")
    return list(targets)


def lora_config(model: PreTrainedModel, r: int, alpha: float, dropout: float, targets: list[str] | None) -> LoraConfig:
    chosen = targets or default_lora_targets(model.config.model_type)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in chosen if t not in names]
    if missing:
        raise ConfigError(f"lora_targets: module '{missing[0]}' not found in {model.config.model_type} model")
    # SEQ_CLS makes peft keep the classification head (classifier / score) fully trainable.
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=chosen)


def prepare_for_method(
    model: PreTrainedModel,
    method: str,
    *,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.05,
    targets: list[str] | None = None,
) -> tuple[PreTrainedModel, ParamCounts]:
    """Wrap ``model`` for ``method`` (``lora`` or ``full``) and count its parameters."""
    if method == "lora":
        model = get_peft_model(model, lora_config(model, r, alpha, dropout, targets))
    elif method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        raise ConfigError(f"method '{method}': expected 'lora' or 'full'")
    return model, count_parameters(model)
