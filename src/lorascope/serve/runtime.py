"""Serve one sequence-classification base model with many unmerged, swappable LoRA adapters.

:class:`MultiAdapterRuntime` replaces each adapted ``nn.Linear`` of the base model by a
:class:`~lorascope.serve.lora_linear.LoraLinear` and its head by a
:class:`~lorascope.serve.head.HeadSwitch`, then serves a batch one of two ways:

* ``"merged"``: every row uses the same adapter. Its merged weights ``W + scaling * B @ A`` (from
  a small LRU cache, see :mod:`lorascope.serve.merged`) and its head are pointed to, and the
  model runs at plain-model speed. A batch for another adapter re-points (or recomputes from the
  pristine base weights, never by subtracting), so the base weights never change.
* ``"bgmv"``: rows use different adapters. The layers point back at the pristine base weights and
  each row's LoRA update and head are gathered from stacks of all adapters (batched gather-matmul).

``mode="auto"`` picks merged when all rows use one adapter and bgmv otherwise. PEFT's unmerged
forward, by contrast, pays Python dispatch per adapted layer on every request.

The runtime owns the model it is given: it is modified in place, set to eval mode, and must not be
moved to another device or dtype afterwards (the cached and stacked tensors would not follow).
It is not thread-safe: one batch at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lorascope.errors import LorascopeError
from lorascope.serve.adapter import LoraAdapter, find_head, load_adapter
from lorascope.serve.head import HeadSwitch
from lorascope.serve.lora_linear import LoraLinear, Routing
from lorascope.serve.merged import MergedWeights

Mode = Literal["auto", "merged", "bgmv"]
MODES = ("auto", "merged", "bgmv")


class MultiAdapterRuntime:
    """A base ``*ForSequenceClassification`` model plus named LoRA adapters.

    Args:
        model: The base model (e.g. ``BertForSequenceClassification``); modified in place.
        merged_cache_size: How many adapters' merged weights to keep. Switching to a cached adapter
            only re-points tensors; to an uncached one it recomputes the merge for every adapted
            layer. Each cached adapter costs one copy of the adapted base weights.
    """

    def __init__(self, model: nn.Module, merged_cache_size: int = 8) -> None:
        if not isinstance(merged_cache_size, int) or merged_cache_size < 1:
            raise LorascopeError(f"merged_cache_size must be an integer >= 1, got {merged_cache_size!r}")
        self.model = model.eval()
        self._routing = Routing()
        self._head_name = find_head(model)
        if isinstance(getattr(model, self._head_name), HeadSwitch):
            raise LorascopeError("this model is already served by a MultiAdapterRuntime; pass a fresh base model")
        head = HeadSwitch(getattr(model, self._head_name), self._routing)
        setattr(model, self._head_name, head)
        self._head = head
        self._layers: dict[str, LoraLinear] = {}
        self._adapters: dict[str, LoraAdapter] = {}
        self._head_params: dict[str, tuple[nn.Parameter | None, nn.Parameter | None]] = {}
        self._slots: dict[str, int] = {}
        self._merged = MergedWeights(merged_cache_size)
        self._active: str | None = None

    @classmethod
    def from_folders(
        cls, model: nn.Module, folders: Mapping[str, str | Path], merged_cache_size: int = 8
    ) -> MultiAdapterRuntime:
        """Build a runtime and load ``{name: PEFT adapter folder}`` into it."""
        runtime = cls(model, merged_cache_size=merged_cache_size)
        for name, folder in folders.items():
            runtime.add_adapter(name, folder)
        return runtime

    @property
    def adapters(self) -> list[str]:
        """Names of the loaded adapters, in load order."""
        return list(self._adapters)

    @property
    def active_adapter(self) -> str | None:
        """The adapter currently merged into the weights, or None when they are the base weights."""
        return self._active

    def n_labels(self, adapter: str) -> int:
        """Number of labels of ``adapter``'s head."""
        return self._head_weight(self._get(adapter)).shape[0]

    def add_adapter(self, name: str, folder: str | Path) -> None:
        """Load a PEFT adapter folder and serve it as ``name``.

        Raises:
            LorascopeError: If the name is taken or invalid, or the folder is unusable for this base.
        """
        if not isinstance(name, str) or not name:
            raise LorascopeError(f"adapter name must be a non-empty string, got {name!r}")
        if name in self._adapters:
            raise LorascopeError(f"adapter '{name}' is already loaded; remove it first")
        adapter = load_adapter(folder, name, self.model)
        for module_name in adapter.modules:
            if module_name not in self._layers:
                self._install(module_name)
        self._adapters[name] = adapter
        self._head_params[name] = (
            None if adapter.head_weight is None else nn.Parameter(adapter.head_weight, requires_grad=False),
            None if adapter.head_bias is None else nn.Parameter(adapter.head_bias, requires_grad=False),
        )
        self._restack()

    def remove_adapter(self, name: str) -> None:
        """Stop serving ``name`` and free its tensors (the base weights are restored if it was active)."""
        self._get(name)
        if self._active == name:
            self.restore_base()
        del self._adapters[name], self._head_params[name]
        self._merged.drop(name)
        self._restack()

    def activate(self, name: str) -> None:
        """Merge ``name`` into the served weights and swap in its head (a no-op if already active)."""
        if name == self._active:
            return
        adapter = self._get(name)
        merged = self._merged.get(adapter, self._layers)
        for module_name, layer in self._layers.items():
            layer.use_weight(merged.get(module_name))
        self._head.use_head(*self._head_params[name])
        self._active = name

    def restore_base(self) -> None:
        """Serve the pristine base weights and base head again."""
        for layer in self._layers.values():
            layer.use_weight(None)
        self._head.use_head(None, None)
        self._active = None

    def predict_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        adapter: str | list[str],
        mode: Mode = "auto",
        **model_inputs: torch.Tensor,
    ) -> torch.Tensor:
        """Classify a batch, each row with its adapter.

        Args:
            input_ids: Token ids, shape [batch, seq].
            attention_mask: Shape [batch, seq] (1 = token, 0 = padding), or None.
            adapter: One adapter name for the whole batch, or one name per row.
            mode: ``"merged"`` (all rows must use one adapter), ``"bgmv"`` (per-row LoRA on the base
                weights, any mix), or ``"auto"`` (merged when the rows use one adapter, else bgmv).
            **model_inputs: Further model inputs of shape [batch, seq], e.g. ``token_type_ids``.
                All inputs are moved to the model's device.

        Returns:
            Logits, shape [batch, n_labels], where n_labels is the largest head among the requested
            adapters; a row whose adapter has fewer labels holds ``-inf`` in the extra columns.

        Raises:
            LorascopeError: On an unknown adapter or mode, or inputs of the wrong shape.
        """
        names = self._row_adapters(input_ids, attention_mask, adapter, model_inputs)
        if mode not in MODES:
            raise LorascopeError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        uniform = len(set(names)) == 1
        if mode == "merged" and not uniform:
            raise LorascopeError("mode='merged' needs every row to use the same adapter; use 'bgmv' or 'auto'")
        given = dict(model_inputs, input_ids=input_ids, attention_mask=attention_mask)
        device = self._head.base_weight.device
        inputs = {k: v.to(device) for k, v in given.items() if v is not None}  # no-op when already there
        with torch.inference_mode():
            if mode == "merged" or (mode == "auto" and uniform):
                self.activate(names[0])
                logits: torch.Tensor = self.model(**inputs).logits
                return logits
            return self._forward_bgmv(names, inputs)

    def _forward_bgmv(self, names: list[str], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # The per-row updates are added to the *base* weights, so nothing may stay merged.
        if self._active is not None:
            self.restore_base()
        rows = [self._slots[n] for n in names]
        self._routing.rows = torch.tensor(rows, dtype=torch.long, device=self._head.base_weight.device)
        try:
            logits: torch.Tensor = self.model(**inputs).logits  # [batch, n_labels_max over all adapters]
        finally:
            self._routing.rows = None
        width = max(self.n_labels(n) for n in set(names))
        return logits[:, :width]

    def _row_adapters(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        adapter: str | list[str],
        model_inputs: Mapping[str, torch.Tensor],
    ) -> list[str]:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise LorascopeError("input_ids must be a 2-D tensor [batch, seq]")
        batch = input_ids.shape[0]
        if batch == 0:
            raise LorascopeError("input_ids has an empty batch")
        for key, value in [("attention_mask", attention_mask), *model_inputs.items()]:
            if value is not None and (not isinstance(value, torch.Tensor) or value.shape != input_ids.shape):
                got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise LorascopeError(f"{key} must have the shape of input_ids {list(input_ids.shape)}, got {got}")
        names = [adapter] * batch if isinstance(adapter, str) else list(adapter)
        if len(names) != batch:
            raise LorascopeError(f"got {len(names)} adapter names for a batch of {batch} rows")
        for name in set(names):
            self._get(name)
        return names

    def _get(self, name: str) -> LoraAdapter:
        adapter = self._adapters.get(name) if isinstance(name, str) else None
        if adapter is None:
            loaded = ", ".join(repr(n) for n in self._adapters) or "none"
            raise LorascopeError(f"unknown adapter {name!r}; loaded: {loaded}")
        return adapter

    def _head_weight(self, adapter: LoraAdapter) -> torch.Tensor:
        return self._head.base_weight if adapter.head_weight is None else adapter.head_weight

    def _install(self, module_name: str) -> None:
        parent_name, _, child = module_name.rpartition(".")
        parent = self.model.get_submodule(parent_name)
        layer = LoraLinear(getattr(parent, child), self._routing)
        setattr(parent, child, layer)
        self._layers[module_name] = layer

    def _restack(self) -> None:
        """Rebuild the per-row stacks (slot i = i-th loaded adapter) after adding or removing one."""
        adapters = list(self._adapters.values())
        self._slots = {a.name: i for i, a in enumerate(adapters)}
        with torch.inference_mode(False), torch.no_grad():
            for module_name, layer in self._layers.items():
                layer.set_stacks(*_stack_lora(adapters, module_name, layer))
            self._head.set_stacks(*_stack_heads(adapters, self._head))


def _stack_lora(
    adapters: list[LoraAdapter], module_name: str, layer: LoraLinear
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A [n, r_max, in] and scaled B [n, out, r_max] for one layer; zeros where an adapter is absent."""
    ranks = [a.modules[module_name].rank for a in adapters if module_name in a.modules]
    if not ranks:
        return None, None
    weight = layer.base_weight
    r_max = max(ranks)
    lora_A = weight.new_zeros(len(adapters), r_max, layer.in_features)
    lora_B = weight.new_zeros(len(adapters), layer.out_features, r_max)
    for slot, adapter in enumerate(adapters):
        module = adapter.modules.get(module_name)
        if module is None:
            continue
        # Folding the scaling into B (in fp32, before the cast) saves a multiply per forward.
        lora_A[slot, : module.rank] = module.lora_A
        lora_B[slot, :, : module.rank] = module.lora_B * module.scaling
    return lora_A, lora_B


def _stack_heads(adapters: list[LoraAdapter], head: HeadSwitch) -> tuple[torch.Tensor, torch.Tensor]:
    """Head weights [n, n_labels_max, hidden] and biases [n, n_labels_max] (-inf in padded labels)."""
    heads = [
        (head.base_weight, head.base_bias) if a.head_weight is None else (a.head_weight, a.head_bias)
        for a in adapters
    ]
    width = max((w.shape[0] for w, _ in heads), default=head.base_weight.shape[0])
    weight = head.base_weight.new_zeros(max(len(heads), 1), width, head.in_features)
    bias = head.base_weight.new_full((max(len(heads), 1), width), float("-inf"))
    for slot, (w, b) in enumerate(heads):
        weight[slot, : w.shape[0]] = w
        bias[slot, : w.shape[0]] = 0.0 if b is None else b
    return weight, bias
