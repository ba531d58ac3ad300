"""The base classifier every serving strategy starts from, loadable again and again with identical weights.

Each strategy needs its own copy of the base (PEFT and the lorascope runtime both modify the model
they wrap in place), and the time to bring a copy up is part of what is measured, so the base is a
recipe (:class:`BaseModelSpec`) rather than one model object. A random-weights alias
(``tinyllama-shape``, see :mod:`lorascope.models.registry`) is built from its shapes instead of read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from lorascope.models.load import from_pretrained_classifier, is_decoder_source, load_tokenizer
from lorascope.models.registry import random_weights_alias, resolve_model
from lorascope.models.shapes import build_random_llama, tinyllama_shape_config

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class BaseModelSpec:
    """How to make a fresh copy of the base classifier.

    Attributes:
        name: What the user asked for (alias, folder or Hub id).
        source: What ``from_pretrained`` reads, or a description of the random initialisation.
        is_decoder: Llama-style (last-token head, EOS right padding) rather than BERT-style.
        tokenizer: The tokenizer, set up the protocol's way.
        label_names: Label id -> name of the base head (adapters bring their own heads).
        seed: Seeds the base head (and, for a random-weights alias, every weight).
    """

    name: str
    source: str
    is_decoder: bool
    tokenizer: PreTrainedTokenizerBase
    label_names: tuple[str, ...]
    seed: int

    @property
    def random_init(self) -> bool:
        return random_weights_alias(self.name) is not None

    def load(self, dtype: str, device: torch.device | str) -> PreTrainedModel:
        """A fresh base classifier in eval mode on ``device``; every call gives identical weights."""
        return self._build(DTYPES[dtype], device)

    def skeleton(self) -> PreTrainedModel:
        """The base classifier's modules and parameter shapes on the meta device: no weights read, no memory.

        Enough to check that an adapter fits this base before anything is loaded for real.
        """
        if self.random_init:
            return self._build(torch.float32, "meta")
        config = AutoConfig.from_pretrained(self.source, num_labels=len(self.label_names))
        with torch.device("meta"):
            # transformers leaves from_config unannotated.
            model: PreTrainedModel = AutoModelForSequenceClassification.from_config(config)  # type: ignore[no-untyped-call]
            return model

    def _build(self, dtype: torch.dtype, device: torch.device | str) -> PreTrainedModel:
        if self.random_init:
            config = tinyllama_shape_config(len(self.label_names), self.tokenizer.pad_token_id)
            return build_random_llama(config, self.seed, dtype, device)
        torch.manual_seed(self.seed)  # the base head is newly initialised: same seed, same head
        return from_pretrained_classifier(self.source, self.label_names, dtype, self.is_decoder,
                                          self.tokenizer.pad_token_id, device, name=self.name)


def open_base(name: str, label_names: tuple[str, ...], seed: int) -> BaseModelSpec:
    """Resolve ``name`` and load its tokenizer (the weights are loaded per strategy by :meth:`BaseModelSpec.load`).

    Raises:
        ConfigError: If the alias, folder or Hub id cannot be resolved.
    """
    random_alias = random_weights_alias(name)
    if random_alias is not None:
        tokenizer = load_tokenizer(random_alias.locate(), is_decoder=False)
        # As for the tiny-llama alias: [SEP] plays EOS, and EOS pads on the right (the protocol's choice).
        tokenizer.eos_token = tokenizer.sep_token
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        return BaseModelSpec(name, f"random init: {random_alias.description}", True, tokenizer, label_names, seed)
    source = resolve_model(name)
    decoder = is_decoder_source(source)
    return BaseModelSpec(name, source, decoder, load_tokenizer(source, decoder), label_names, seed)
