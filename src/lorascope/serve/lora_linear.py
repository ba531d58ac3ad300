"""Drop-in replacement for an adapted ``nn.Linear``: merged weights or per-row LoRA (BGMV).

A :class:`LoraLinear` keeps the layer's original weight untouched as ``base_weight`` and serves
one of two ways:

* merged: ``weight`` points at a tensor that already holds ``W + scaling * B @ A`` for the active
  adapter (or at ``base_weight`` itself when no adapter is active), so the forward is exactly
  ``nn.Linear``'s and costs the same;
* per-row (BGMV, as in Punica / S-LoRA / vLLM): ``weight`` is ``base_weight`` and each row ``i`` of
  the batch adds ``scaling * (x_i A_{a(i)}^T) B_{a(i)}^T`` for its own adapter ``a(i)``. All
  adapters' A and B are stacked (ranks zero-padded to the largest), gathered per row and applied
  with two batched matmuls, so the cost does not grow with the number of distinct adapters.

Which way a forward goes is decided by a shared :class:`Routing` object the runtime sets once per
batch, so the model's own forward code runs unchanged (including its pooling and masking).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Routing:
    """Per-batch routing shared by every replaced module of one runtime.

    Attributes:
        rows: Adapter slot of each batch row, shape [batch], int64, or None for the merged path.
    """

    def __init__(self) -> None:
        self.rows: torch.Tensor | None = None


class LoraLinear(nn.Linear):
    """An ``nn.Linear`` that serves LoRA adapters either merged or per row.

    It is a subclass of ``nn.Linear`` sharing the original ``weight``/``bias`` parameters, so the
    model's ``state_dict`` keys and ``isinstance`` checks are unchanged.

    Attributes:
        base_weight: The original weight, shape [out, in]; never written to.
        lora_A: Stacked down projections, shape [n_slots, r_max, in]; rows past an adapter's rank
            are zero, and so is every row of an adapter that does not target this layer.
        lora_B: Stacked up projections pre-multiplied by each adapter's scaling, shape
            [n_slots, out, r_max]; columns past an adapter's rank are zero.
    """

    base_weight: nn.Parameter  # set with object.__setattr__ in __init__, outside _parameters

    def __init__(self, linear: nn.Linear, routing: Routing) -> None:
        # nn.Linear.__init__ would allocate a fresh weight; share the original parameters instead.
        nn.Module.__init__(self)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        # Kept outside _parameters so state_dict / named_parameters do not list the weight twice.
        object.__setattr__(self, "base_weight", linear.weight)
        self.routing = routing
        self.lora_A: torch.Tensor | None = None
        self.lora_B: torch.Tensor | None = None

    def use_weight(self, weight: nn.Parameter | None) -> None:
        """Serve ``weight`` (a merged copy, shape [out, in]) or, with None, the pristine base weight."""
        # Direct dict write: re-pointing is O(1) and never touches the base weight's storage.
        self._parameters["weight"] = self.base_weight if weight is None else weight

    def set_stacks(self, lora_A: torch.Tensor | None, lora_B: torch.Tensor | None) -> None:
        """Install the stacked adapters, shapes [n_slots, r_max, in] and [n_slots, out, r_max]."""
        self.lora_A, self.lora_B = lora_A, lora_B

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer.

        Args:
            x: Input, shape [batch, ..., in].

        Returns:
            Output, shape [batch, ..., out].
        """
        y = F.linear(x, self.weight, self.bias)
        rows = self.routing.rows
        if rows is None or self.lora_A is None:
            return y
        batch = x.shape[0]
        x3 = x.reshape(batch, -1, self.in_features)  # [batch, tokens, in]
        assert self.lora_B is not None  # set_stacks sets both stacks or neither
        lora_A = self.lora_A.index_select(0, rows)  # [batch, r_max, in]
        lora_B = self.lora_B.index_select(0, rows)  # [batch, out, r_max]
        low = torch.bmm(x3, lora_A.transpose(1, 2))  # [batch, tokens, r_max]
        # y is a fresh tensor from F.linear, so the in-place add is safe and saves an allocation.
        y.view(batch, -1, self.out_features).baddbmm_(low, lora_B.transpose(1, 2))
        return y

    def extra_repr(self) -> str:
        slots = 0 if self.lora_A is None else self.lora_A.shape[0]
        return f"{super().extra_repr()}, lora_slots={slots}"
