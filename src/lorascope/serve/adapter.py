"""Load a PEFT LoRA adapter folder into plain tensors, checked against a base model.

A folder written by ``PeftModel.save_pretrained`` for ``task_type="SEQ_CLS"`` holds
``adapter_config.json`` and ``adapter_model.safetensors``. Its tensor keys look like::

    base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight   [r, in]
    base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight   [out, r]
    base_model.model.classifier.weight                                          [n_labels, hidden]
    base_model.model.classifier.bias                                            [n_labels]

The last two are the adapter's own classification head (PEFT adds the head to ``modules_to_save``
for SEQ_CLS and strips the ``modules_to_save.<adapter>`` part when saving). Only plain LoRA on
``nn.Linear`` layers plus a single-``nn.Linear`` head is supported; every other PEFT option that
changes the maths (DoRA, LoRA biases, trained base biases, fan_in_fan_out, ...) is refused with a
:class:`~lorascope.errors.LorascopeError` rather than silently served wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorascope.errors import LorascopeError

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors",)  # safetensors only: never unpickle a served file
_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")
# PEFT versions differ in whether the saved head keys keep the wrapper segment; drop it if present.
_MODULES_TO_SAVE = re.compile(r"\.modules_to_save\.[^.]+(?=\.)")

# Config entries that, when set, change what the adapter computes in ways this runtime does not model.
_UNSUPPORTED_IF_SET = (
    "layer_replication",
    "trainable_token_indices",
    "target_parameters",
    "alora_invocation_tokens",
    "use_bdlora",
    "arrow_config",
    "kasa_config",
    "velora_config",
    "monteclora_config",
    "use_qalora",
)
# These initialisations rewrite the base weights; an adapter saved without PEFT's
# ``path_initial_model_for_weight_conversion`` only works on that rewritten base.
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq")


@dataclass(frozen=True)
class LoraModule:
    """One adapted Linear layer of one adapter, in fp32 (the master copy used for merging).

    Attributes:
        lora_A: Down projection, shape [r, in_features].
        lora_B: Up projection, shape [out_features, r].
        scaling: ``alpha / r`` (or ``alpha / sqrt(r)`` with rsLoRA); the update is
            ``scaling * B @ A``, shape [out_features, in_features].
    """

    lora_A: torch.Tensor
    lora_B: torch.Tensor
    scaling: float

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0]


@dataclass(frozen=True)
class LoraAdapter:
    """A LoRA adapter for one ``*ForSequenceClassification`` base, as plain tensors.

    Attributes:
        name: The name the runtime serves it under.
        folder: Where it was loaded from.
        modules: Adapted Linear layers, keyed by module path in the base model
            (e.g. ``"model.layers.0.self_attn.q_proj"``).
        head_weight: The adapter's classification head, shape [n_labels, hidden], or None when the
            folder has no head (the base model's head is then used).
        head_bias: Shape [n_labels], or None when the head has no bias.
    """

    name: str
    folder: Path
    modules: dict[str, LoraModule]
    head_weight: torch.Tensor | None
    head_bias: torch.Tensor | None


def find_head(model: nn.Module) -> str:
    """Name of the classification head of a ``*ForSequenceClassification`` model.

    Raises:
        LorascopeError: If the model has no single-``nn.Linear`` head called ``score`` or ``classifier``.
    """
    for name in ("score", "classifier"):
        if isinstance(getattr(model, name, None), nn.Linear):
            return name
    raise LorascopeError(
        f"{type(model).__name__} has no nn.Linear head named 'score' or 'classifier'; "
        "the serving runtime supports *ForSequenceClassification models with a single Linear head"
    )


def load_adapter(folder: str | Path, name: str, model: nn.Module) -> LoraAdapter:
    """Read a PEFT adapter folder and check it fits ``model``.

    Args:
        folder: A folder written by ``PeftModel.save_pretrained``.
        name: The name to serve the adapter under.
        model: The base ``*ForSequenceClassification`` model (its weights decide the expected shapes).

    Returns:
        The adapter with fp32 tensors on the device of ``model``'s parameters.

    Raises:
        LorascopeError: If the folder is missing or malformed, uses an unsupported PEFT option, or
            was trained for a base with different module names or shapes.
    """
    folder = Path(folder)
    where = f"adapter '{name}' ({folder})"
    config = _read_config(folder, where)
    tensors = _read_tensors(folder, where)
    device = next(model.parameters()).device
    head_name = find_head(model)

    pairs: dict[str, dict[str, torch.Tensor]] = {}
    head: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        if not key.startswith(_PREFIX):
            raise LorascopeError(f"{where}: unexpected tensor key {key!r} (expected a 'base_model.model.' prefix)")
        rest = _MODULES_TO_SAVE.sub("", key[len(_PREFIX) :])
        match = _LORA_KEY.match(rest)
        if match:
            pairs.setdefault(match["module"], {})[match["which"]] = tensor
        elif rest in (f"{head_name}.weight", f"{head_name}.bias"):
            head[rest.rsplit(".", 1)[1]] = tensor
        else:
            raise LorascopeError(
                f"{where}: unsupported tensor {key!r}; only LoRA A/B of Linear layers and the "
                f"'{head_name}' head are supported"
            )
    if not pairs:
        raise LorascopeError(f"{where}: the weights file holds no LoRA A/B tensors")

    modules = {}
    for module_name, pair in sorted(pairs.items()):
        modules[module_name] = _check_module(module_name, pair, config, model, where, device)
    head_weight, head_bias = _check_head(head, getattr(model, head_name), head_name, where, device)
    return LoraAdapter(name=name, folder=folder, modules=modules, head_weight=head_weight, head_bias=head_bias)


def runtime_refusal(folder: str | Path) -> str | None:
    """Why the serving runtime cannot serve the adapter in ``folder`` exactly (e.g. DoRA), None if it can."""
    try:
        _read_config(Path(folder), str(folder))
    except LorascopeError as err:
        return str(err)
    return None


def _read_config(folder: Path, where: str) -> dict[str, Any]:
    if not folder.is_dir():
        raise LorascopeError(f"{where}: folder not found")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise LorascopeError(f"{where}: no {CONFIG_FILE}; is this a PEFT adapter folder?")
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise LorascopeError(f"{where}: cannot read {CONFIG_FILE}: {err}") from err
    if not isinstance(config, dict):
        raise LorascopeError(f"{where}: {CONFIG_FILE} is not a JSON object")

    def refuse(what: str) -> LorascopeError:
        return LorascopeError(f"{where}: {what} is not supported by the serving runtime")

    if config.get("peft_type") != "LORA":
        raise refuse(f"peft_type={config.get('peft_type')!r} (only 'LORA')")
    if config.get("task_type") != "SEQ_CLS":
        raise refuse(f"task_type={config.get('task_type')!r} (only 'SEQ_CLS')")
    if config.get("use_dora"):
        raise refuse("DoRA (use_dora=true)")
    if config.get("fan_in_fan_out"):
        raise refuse("fan_in_fan_out=true (Conv1D bases)")
    if config.get("bias", "none") != "none":
        raise refuse(f"bias={config.get('bias')!r} (trained base biases; only 'none')")
    if config.get("lora_bias"):
        raise refuse("lora_bias=true")
    for key in _UNSUPPORTED_IF_SET:
        if config.get(key):
            raise refuse(f"{key}={config[key]!r}")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise refuse(
            f"init_lora_weights={init!r} without base-weight conversion "
            "(save with path_initial_model_for_weight_conversion)"
        )
    for key in ("r", "lora_alpha"):
        if not isinstance(config.get(key), (int, float)) or config[key] <= 0:
            raise LorascopeError(f"{where}: {CONFIG_FILE} needs a positive number for {key!r}, got {config.get(key)!r}")
    return config


def _read_tensors(folder: Path, where: str) -> dict[str, torch.Tensor]:
    from lorascope.models.folders import check_adapter_folder, read_safetensors

    check_adapter_folder(folder)  # refuses pickle-only folders with the conversion to run
    try:
        return read_safetensors(folder / WEIGHT_FILES[0], "pt")
    except LorascopeError as err:
        raise LorascopeError(f"{where}: {err}") from None


def _pattern_value(patterns: Mapping[str, float] | None, module_name: str, default: float) -> float:
    # Same matching as peft.utils.other.get_pattern_key: a pattern matches a suffix of the module path.
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module_name):
            return value
    return default


def _check_module(
    module_name: str, pair: dict[str, torch.Tensor], config: dict[str, Any], model: nn.Module, where: str, device: torch.device
) -> LoraModule:
    if set(pair) != {"A", "B"}:
        missing = "lora_B" if "A" in pair else "lora_A"
        raise LorascopeError(f"{where}: {module_name!r} has no {missing} tensor")
    try:
        layer = model.get_submodule(module_name)
    except AttributeError:
        raise LorascopeError(
            f"{where}: targets {module_name!r}, which the base model {type(model).__name__} does not have; "
            "was it trained on a different base?"
        ) from None
    if not isinstance(layer, nn.Linear):
        raise LorascopeError(f"{where}: targets {module_name!r}, a {type(layer).__name__}; only nn.Linear is supported")
    lora_A, lora_B = pair["A"], pair["B"]
    rank = lora_A.shape[0] if lora_A.dim() == 2 else -1
    expected_A, expected_B = (rank, layer.in_features), (layer.out_features, rank)
    if lora_A.dim() != 2 or lora_B.dim() != 2 or tuple(lora_A.shape) != expected_A or tuple(lora_B.shape) != expected_B:
        raise LorascopeError(
            f"{where}: {module_name!r} has lora_A {list(lora_A.shape)} and lora_B {list(lora_B.shape)}, but the base "
            f"Linear is {layer.in_features}->{layer.out_features} "
            f"(expected {list(expected_A)} and {list(expected_B)}); "
            "was it trained on a different base?"
        )
    config_rank = _pattern_value(config.get("rank_pattern"), module_name, config["r"])
    if config_rank != rank:
        raise LorascopeError(f"{where}: {module_name!r} has rank {rank} but {CONFIG_FILE} says r={config_rank}")
    alpha = _pattern_value(config.get("alpha_pattern"), module_name, config["lora_alpha"])
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    return LoraModule(
        lora_A=lora_A.to(device=device, dtype=torch.float32),
        lora_B=lora_B.to(device=device, dtype=torch.float32),
        scaling=float(scaling),
    )


def _check_head(
    head: dict[str, torch.Tensor], base_head: nn.Linear, head_name: str, where: str, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if not head:
        return None, None
    weight = head.get("weight")
    if weight is None or weight.dim() != 2 or weight.shape[1] != base_head.in_features:
        shape = None if weight is None else list(weight.shape)
        raise LorascopeError(
            f"{where}: head '{head_name}.weight' has shape {shape}, expected [n_labels, {base_head.in_features}]; "
            "was it trained on a different base?"
        )
    bias = head.get("bias")
    if (bias is None) != (base_head.bias is None):
        raise LorascopeError(f"{where}: head '{head_name}' bias presence differs from the base model's head")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise LorascopeError(
            f"{where}: head '{head_name}.bias' has shape {list(bias.shape)}, expected [{weight.shape[0]}]"
        )
    weight = weight.to(device=device, dtype=base_head.weight.dtype)
    bias = None if bias is None else bias.to(device=device, dtype=base_head.weight.dtype)
    return weight, bias
