"""Build the cached model folders behind the ``smollm2`` and ``tiny-llama`` aliases."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from lorascope.models.cache import materialise
from lorascope.models.packages import minilm_dir, smollm2_gguf


def _convert_smollm2(out: Path) -> None:
    gguf = smollm2_gguf()
    # Dequantises the 4-bit weights to fp32 (about 15 s); saved once as a causal LM so the
    # backbone loads into any head, and the classification head is initialised per run seed.
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The dequantised model is a plain fp32 model now; the quantizer marker only blocks saving.
    model.hf_quantizer = None  # type: ignore[assignment]  # set at load time; transformers declares no attribute
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (converted on first use, then cached)."""
    return materialise("smollm2-135m-instruct", _convert_smollm2)


def _build_tiny_llama(out: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    # MiniLM's WordPiece vocabulary stands in for a Llama tokenizer; [SEP] plays EOS (and pad).
    tokenizer.eos_token = "[SEP]"
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    # A fixed seed: every run and every process sees the same "pretrained" base.
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    torch.random.set_rng_state(generator_state)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def tiny_llama_folder() -> Path:
    """A 2-layer random Llama (hidden 64) built once with a fixed seed and cached."""
    return materialise("tiny-llama-v1", _build_tiny_llama)
