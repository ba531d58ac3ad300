"""Load a base model as a sequence classifier with a tokenizer set up the protocol's way."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers import logging as hf_logging

from lorascope.errors import ConfigError
from lorascope.models.registry import resolve_model

# Encoders use the tokenizer's pair encoding and a [CLS]/pooler head; every other architecture
# is treated as a decoder (last-token head, EOS padding on the right).
ENCODER_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert", "mpnet", "modernbert", "camembert"}
)


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    is_decoder: bool
    source: str  # what from_pretrained was given

    @property
    def model_type(self) -> str:
        return self.model.config.model_type


def load_tokenizer(source: str, is_decoder: bool) -> PreTrainedTokenizerBase:
    """The model's tokenizer; decoders pad on the right with EOS (the protocol's choice)."""
    tokenizer = AutoTokenizer.from_pretrained(source)
    if is_decoder:
        if tokenizer.eos_token is None:
            raise ConfigError(f"model '{source}': its tokenizer has no EOS token, needed to pad a decoder")
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
    return tokenizer


def is_decoder_source(source: str) -> bool:
    return AutoConfig.from_pretrained(source).model_type not in ENCODER_MODEL_TYPES


def load_classifier(
    model: str,
    label_names: tuple[str, ...],
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """A ``*ForSequenceClassification`` model with a fresh head initialised from ``seed``.

    Args:
        model: alias (``minilm``, ``smollm2``, ``tinyllama``, ``tiny-llama``), folder or Hub id.
        label_names: label id -> name; sets ``num_labels``, ``id2label`` and ``label2id``.
        seed: seeds the classification head's initialisation (the backbone is pretrained).
        dtype: parameter dtype.
    """
    source = resolve_model(model)
    decoder = is_decoder_source(source)
    tokenizer = load_tokenizer(source, decoder)
    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    # The "newly initialized head" load report is expected for every base model: keep it quiet.
    hf_logging.set_verbosity_error()
    try:
        net = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)},
            dtype=dtype,
            trust_remote_code=False,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    if decoder:
        net.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(net, tokenizer, decoder, source)


def load_trained(folder: str, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Reload a trained run's model: a full model folder or a PEFT adapter folder on its base."""
    from pathlib import Path

    p = Path(folder)
    if (p / "adapter_config.json").is_file():
        from peft import AutoPeftModelForSequenceClassification

        return AutoPeftModelForSequenceClassification.from_pretrained(p, dtype=dtype)
    if (p / "config.json").is_file():
        return AutoModelForSequenceClassification.from_pretrained(p, dtype=dtype)
    raise ConfigError(f"{p}: neither a PEFT adapter folder (adapter_config.json) nor a model folder (config.json)")
