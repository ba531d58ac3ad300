"""Pool token-level hidden states into one vector per example.

``mean``: average over non-pad tokens (what the drift analysis compares).
``head_token``: the token the classification head reads — the last non-pad token for decoders
(Llama's sequence classifier), the first token ([CLS]) for encoders (BERT's pooler).
"""

from __future__ import annotations

import typing

import torch

from lorascope.represent.config import Pooling

POOLINGS: tuple[str, ...] = typing.get_args(Pooling)


def pooling_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Which positions hold real tokens: the collator's attention mask ``[batch, seq]``.

    Never ``input_ids != pad_token_id``: decoders here pad with EOS and also join sentence pairs
    with EOS, so a pad-id mask would silently drop every pair's separator (pooled states then move
    by up to 0.04 on SmolLM2-sized models, and base and fine-tuned models both carry the error).
    """
    return batch["attention_mask"]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over positions where ``mask`` is 1.

    Args:
        hidden: float [batch, seq, d].
        mask: int or bool [batch, seq].

    Returns:
        float32 [batch, d], accumulated in float32 even for bf16 states.
    """
    m = mask.to(torch.float32).unsqueeze(-1)
    return (hidden.to(torch.float32) * m).sum(1) / m.sum(1).clamp_min(1.0)


def head_token(hidden: torch.Tensor, mask: torch.Tensor, is_decoder: bool) -> torch.Tensor:
    """The state at the head's read-out position; ``hidden`` [batch, seq, d] -> [batch, d].

    Decoders are padded on the right, so the last real token sits at ``mask.sum(1) - 1``.
    """
    if not is_decoder:
        return hidden[:, 0].to(torch.float32)
    last = mask.sum(1).long() - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].to(torch.float32)
