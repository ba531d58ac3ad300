"""Randomly initialised models with a real model's shapes, for timing without downloading weights.

Latency and memory depend on shapes, not on the values of the weights, so the serving benchmark
can measure the reference study's base (TinyLlama-1.1B) on a machine that has no network.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForSequenceClassification


def tinyllama_shape_config(num_labels: int, pad_token_id: int) -> LlamaConfig:
    """TinyLlama-1.1B's architecture (22 layers, hidden 2048, 32 heads, 4 kv heads, MLP 5632, vocab 32000)."""
    # num_labels is a PretrainedConfig setting that LlamaConfig's annotated signature leaves out.
    return LlamaConfig(  # type: ignore[call-arg]
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        num_labels=num_labels,
        pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )


def build_random_llama(config: LlamaConfig, seed: int, dtype: torch.dtype, device: torch.device | str
                       ) -> LlamaForSequenceClassification:
    """A randomly initialised Llama classifier built directly on ``device`` (``"meta"`` allocates nothing)."""
    torch.manual_seed(seed)
    # Initialising on the target device avoids a 4 GB host-side copy for the 1.1B shape.
    with torch.device(device):
        # transformers leaves _from_config and eval unannotated.
        model: LlamaForSequenceClassification = LlamaForSequenceClassification._from_config(  # type: ignore[no-untyped-call]
            config, dtype=dtype)
    evaluating: LlamaForSequenceClassification = model.eval()  # type: ignore[no-untyped-call]
    return evaluating
