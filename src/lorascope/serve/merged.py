"""Merged weights ``W + scaling * B @ A`` per adapter, kept in a small LRU cache.

Serving one adapter merged costs exactly what the plain model costs; the price is paid when the
active adapter changes. Two ways to pay it, both supported by :class:`MergedWeights`:

* recompute on every switch (``capacity=1``): one extra copy of the adapted weights in memory;
  a switch computes ``W + scaling * B @ A`` from the pristine ``W`` for every adapted layer
  (a rank-r GEMM plus a full read of ``W`` and write of the result). Nothing is ever subtracted,
  so no rounding error builds up however many switches happen.
* cache merged copies (``capacity=k``): ``k`` copies of the adapted weights; switching among
  cached adapters only re-points each layer to another tensor, which costs nothing.

The adapted weights are usually a small part of the model (q/v of a 6-layer, 384-wide encoder:
12 x 384 x 384 floats, 7 MB in fp32 per adapter) but not for large decoders (q/v of a 7B Llama:
about 1.3 GB per adapter in bf16), hence the bound. At that MiniLM shape on a 2-core CPU a
recomputed switch took about 0.7 ms (4% of a batch-1, 64-token forward) and a cached one nothing
measurable, so the runtime's default keeps up to 8 adapters merged.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from lorascope.serve.adapter import LoraAdapter, LoraModule
from lorascope.serve.lora_linear import LoraLinear


def merge_weight(
    base: torch.Tensor, lora_A: torch.Tensor, lora_B: torch.Tensor, scaling: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Return ``base + scaling * lora_B @ lora_A`` in ``base``'s dtype, leaving ``base`` untouched.

    Args:
        base: Pristine weight, shape [out, in].
        lora_A: fp32, shape [r, in].
        lora_B: fp32, shape [out, r].
        scaling: LoRA scaling.
        out: Optional buffer to write into, shape [out, in], dtype of ``base`` (not ``base`` itself).

    Returns:
        The merged weight, shape [out, in], dtype and device of ``base`` (``out`` when given).
    """
    if base.dtype == torch.float32:
        if out is None:
            return torch.addmm(base, lora_B, lora_A, alpha=scaling)
        return torch.addmm(base, lora_B, lora_A, alpha=scaling, out=out)
    # In bf16/fp16 the update is often below half an ulp of W: computing it in the low precision
    # would round much of it away (and B @ A itself loses bits), so add in fp32 and round once.
    merged = torch.addmm(base.float(), lora_B, lora_A, alpha=scaling)
    return merged.to(base.dtype) if out is None else out.copy_(merged)


class MergedWeights:
    """LRU cache of merged weights per adapter.

    Args:
        capacity: How many adapters' merged weights to keep (at least 1: the active one).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._cache: OrderedDict[str, dict[str, nn.Parameter]] = OrderedDict()

    def get(self, adapter: LoraAdapter, layers: dict[str, LoraLinear]) -> dict[str, nn.Parameter]:
        """Merged weights of ``adapter`` by module name, computed (and the oldest evicted) if not cached."""
        cached = self._cache.get(adapter.name)
        if cached is not None:
            self._cache.move_to_end(adapter.name)
            return cached
        # Reuse the evicted adapter's buffers: a switch with capacity=1 then needs no allocation and
        # peak memory stays at one merged copy. Writing into a buffer the model still points at is
        # fine because nothing runs a forward until the runtime re-points every layer.
        spare: dict[str, nn.Parameter] = {}
        while len(self._cache) >= self.capacity:
            spare.update(self._cache.popitem(last=False)[1])
        merged = {}
        # Normal (not inference-mode) tensors, so buffers can be rewritten in place whatever mode
        # a later switch happens in.
        with torch.inference_mode(False), torch.no_grad():
            for name, module in adapter.modules.items():
                merged[name] = self._merge_one(layers[name].base_weight, module, spare.pop(name, None))
        self._cache[adapter.name] = merged
        return merged

    @staticmethod
    def _merge_one(base: torch.Tensor, module: LoraModule, buffer: nn.Parameter | None) -> nn.Parameter:
        if buffer is not None and buffer.shape == base.shape and buffer.dtype == base.dtype:
            merge_weight(base, module.lora_A, module.lora_B, module.scaling, out=buffer.data)
            return buffer
        return nn.Parameter(merge_weight(base, module.lora_A, module.lora_B, module.scaling), requires_grad=False)

    def drop(self, name: str) -> None:
        """Forget ``name``'s merged weights (after the adapter is removed)."""
        self._cache.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._cache
