"""Per-adapter classification heads for a ``*ForSequenceClassification`` model.

Each LoRA adapter for SEQ_CLS trains its own head (``classifier`` for BERT, ``score`` for Llama).
:class:`HeadSwitch` replaces the model's head ``nn.Linear`` in place, so the model's own code
still decides what the head reads (BERT: the pooler output, [batch, hidden]; Llama: every position,
[batch, seq, hidden], pooled at the last non-pad token *after* the head) and nothing about pooling
has to be reimplemented.

Adapters may have different numbers of labels. On the per-row path the heads are stacked to the
largest ``n_labels``; a row whose adapter has fewer labels gets ``-inf`` in the extra columns
(zero weight plus a ``-inf`` bias), which softmax and argmax treat as "never this label".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lorascope.serve.lora_linear import Routing


class HeadSwitch(nn.Linear):
    """The model's head ``nn.Linear``, serving one adapter's head or a different head per row.

    Attributes:
        base_weight: The base model's head weight, shape [n_labels_base, hidden]; never written to.
        base_bias: Its bias, shape [n_labels_base], or None.
        stack_weight: All slots' head weights, shape [n_slots, n_labels_max, hidden], zero-padded.
        stack_bias: All slots' head biases, shape [n_slots, n_labels_max], ``-inf`` in padded labels.
    """

    # Set with object.__setattr__ in __init__, outside _parameters.
    base_weight: nn.Parameter
    base_bias: nn.Parameter | None

    def __init__(self, linear: nn.Linear, routing: Routing) -> None:
        nn.Module.__init__(self)  # share the original parameters rather than allocate new ones
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        # Kept outside _parameters so state_dict does not list them twice.
        object.__setattr__(self, "base_weight", linear.weight)
        object.__setattr__(self, "base_bias", linear.bias)
        self.routing = routing
        self.stack_weight: torch.Tensor | None = None
        self.stack_bias: torch.Tensor | None = None

    def use_head(self, weight: nn.Parameter | None, bias: nn.Parameter | None) -> None:
        """Serve one head: ``weight`` [n_labels, hidden] and ``bias`` [n_labels], or the base head with None."""
        # Re-pointing instead of copying: heads may differ in n_labels, and the base head stays pristine.
        if weight is None:
            weight, bias = self.base_weight, self.base_bias
        self._parameters["weight"] = weight
        self._parameters["bias"] = bias
        self.out_features = weight.shape[0]

    def set_stacks(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Install stacked heads, shapes [n_slots, n_labels_max, hidden] and [n_slots, n_labels_max]."""
        self.stack_weight, self.stack_bias = weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the head.

        Args:
            x: Head input, shape [batch, ..., hidden].

        Returns:
            Logits, shape [batch, ..., n_labels] (merged path) or [batch, ..., n_labels_max] (per row).
        """
        rows = self.routing.rows
        if rows is None:
            return F.linear(x, self.weight, self.bias)
        batch = x.shape[0]
        assert self.stack_weight is not None and self.stack_bias is not None  # the runtime stacks before routing rows
        weight = self.stack_weight.index_select(0, rows)  # [batch, n_labels_max, hidden]
        bias = self.stack_bias.index_select(0, rows).unsqueeze(1)  # [batch, 1, n_labels_max]
        x3 = x.reshape(batch, -1, self.in_features)  # [batch, positions, hidden]
        logits = torch.baddbmm(bias, x3, weight.transpose(1, 2))  # [batch, positions, n_labels_max]
        return logits.view(*x.shape[:-1], weight.shape[1])
