"""Make a model trainable by one of the two methods: LoRA (peft) or full fine-tuning.

The two methods share everything else; they differ only here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, TypeAlias, overload

from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from lorascope.errors import ConfigError

# A base model as loaded, or wrapped in a LoRA adapter by PEFT (which forwards the base's attributes).
AdaptedModel: TypeAlias = PreTrainedModel | PeftModel


@dataclass
class ParamCounts:
    """Trainable and total parameter counts of a model."""

    trainable: int
    total: int

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "trainable_percent": round(self.trainable_percent, 4)}


def count_parameters(model: nn.Module) -> ParamCounts:
    """The model's trainable (``requires_grad``) and total parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return ParamCounts(trainable, total)


def default_lora_targets(model_type: str) -> list[str]:
    """PEFT's per-architecture defaults: ``q_proj``/``v_proj`` (Llama), ``query``/``value`` (BERT)."""
    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    if not targets:
        raise ConfigError(f"no default LoRA target modules for model type '{model_type}': set lora_targets")
    return list(targets)


_LORA_LAYERS = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, Conv1D)
# The classification heads PEFT trains in full for SEQ_CLS (modules_to_save): never LoRA targets.
_HEADS = ("classifier", "score")


def all_linear_targets(model: PreTrainedModel) -> list[str]:
    """The names of every ``nn.Linear`` outside the classification head (``q_proj``, …, ``down_proj``).

    PEFT's own ``"all-linear"`` leaves out only a language-model head; on a sequence classifier it
    would also adapt the classification head, which PEFT already trains in full.
    """
    names = set()
    for name, module in model.named_modules():
        parts = name.split(".")
        if isinstance(module, nn.Linear) and not set(parts) & set(_HEADS):
            names.add(parts[-1])
    return sorted(names)


def lora_config(model: PreTrainedModel, r: int, alpha: float, dropout: float, targets: list[str] | str | None, *,
                rslora: bool = False, dora: bool = False) -> LoraConfig:
    """PEFT's LoRA config for ``model``; ``targets`` are checked here, where the error can name them.

    Args:
        targets: module names, ``"all-linear"``, or None for the architecture's default.
        rslora: scale the update by alpha / sqrt(r) (PEFT ``use_rslora``).
        dora: weight-decomposed LoRA (PEFT ``use_dora``).

    Raises:
        ConfigError: a target that the model does not have, that is its classification head, or
            whose layers LoRA cannot adapt.
    """
    if targets == "all-linear":
        chosen = all_linear_targets(model)
    else:
        chosen = list(targets or default_lora_targets(model.config.model_type))
    by_name: dict[str, list[nn.Module]] = {}
    for name, module in model.named_modules():
        by_name.setdefault(name.rsplit(".", 1)[-1], []).append(module)
    for target in chosen:
        if target not in by_name:
            raise ConfigError(f"lora_targets: module '{target}' not found in {model.config.model_type} model")
        if target in _HEADS:
            raise ConfigError(f"lora_targets: '{target}' is the classification head, which is trained in full; "
                              "target attention or MLP layers")
        if not any(isinstance(m, _LORA_LAYERS) for m in by_name[target]):
            kind = type(by_name[target][0]).__name__
            raise ConfigError(f"lora_targets: '{target}' is a {kind}; LoRA adapts Linear, Embedding and Conv layers")
    # SEQ_CLS makes peft keep the classification head (classifier / score) fully trainable.
    # PEFT annotates lora_alpha as int; it takes any number (the update is scaled by alpha / r).
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=chosen,  # type: ignore[arg-type]
                      use_rslora=rslora, use_dora=dora)


@overload
def prepare_for_method(model: PreTrainedModel, method: Literal["lora"], *, r: int = ..., alpha: float = ...,
                       dropout: float = ..., targets: list[str] | str | None = ..., rslora: bool = ...,
                       dora: bool = ...) -> tuple[PeftModel, ParamCounts]: ...


@overload
def prepare_for_method(model: PreTrainedModel, method: Literal["full"], *, r: int = ..., alpha: float = ...,
                       dropout: float = ..., targets: list[str] | str | None = ..., rslora: bool = ...,
                       dora: bool = ...) -> tuple[PreTrainedModel, ParamCounts]: ...


@overload
def prepare_for_method(model: PreTrainedModel, method: str, *, r: int = ..., alpha: float = ..., dropout: float = ...,
                       targets: list[str] | str | None = ..., rslora: bool = ...,
                       dora: bool = ...) -> tuple[AdaptedModel, ParamCounts]: ...


def prepare_for_method(
    model: PreTrainedModel,
    method: str,
    *,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.05,
    targets: list[str] | str | None = None,
    rslora: bool = False,
    dora: bool = False,
) -> tuple[AdaptedModel, ParamCounts]:
    """Wrap ``model`` for ``method`` (``lora`` or ``full``) and count its parameters."""
    wrapped: AdaptedModel = model
    if method == "lora":
        wrapped = get_peft_model(model, lora_config(model, r, alpha, dropout, targets, rslora=rslora, dora=dora))
    elif method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        raise ConfigError(f"method '{method}': expected 'lora' or 'full'")
    return wrapped, count_parameters(wrapped)
