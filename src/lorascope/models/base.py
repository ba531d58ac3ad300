"""The base classifier every strategy starts from, loadable again and again with identical weights.

Each strategy needs its own copy of the base (PEFT and the lorascope runtime both modify the model
they wrap in place), and the time to bring a copy up is part of what is measured, so the base is a
recipe (:class:`BaseModelSpec`) rather than one model object.

Besides the usual aliases, folders and Hub ids, ``tinyllama-shape`` builds a randomly initialised
``LlamaForSequenceClassification`` with TinyLlama-1.1B's shapes (the reference study's base), for
GPU timing without network access: latency depends on shapes, not on the values of the weights.
Its token ids come from MiniLM's WordPiece vocabulary (30,522 ids, inside Llama's 32,000), so
sequence lengths differ a little from TinyLlama's SentencePiece tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerBase,
)
from transformers import logging as hf_logging

from lorascope.models.load import is_decoder_source, load_tokenizer
from lorascope.models.packages import minilm_dir
from lorascope.models.registry import resolve_model

TINYLLAMA_SHAPE = "tinyllama-shape"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def tinyllama_shape_config(num_labels: int, pad_token_id: int) -> LlamaConfig:
    """TinyLlama-1.1B's architecture (22 layers, hidden 2048, 32 heads, 4 kv heads, MLP 5632, vocab 32000)."""
    return LlamaConfig(
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


def build_random_llama(config: LlamaConfig, seed: int, dtype: torch.dtype, device: torch.device | str) -> nn.Module:
    """A randomly initialised Llama classifier built directly on ``device`` (``"meta"`` allocates nothing)."""
    torch.manual_seed(seed)
    # Initialising on the target device avoids a 4 GB host-side copy for the 1.1B shape.
    with torch.device(device):
        model = LlamaForSequenceClassification._from_config(config, dtype=dtype)
    return model.eval()


@dataclass
class BaseModelSpec:
    """How to make a fresh copy of the base classifier.

    Attributes:
        name: What the user asked for (alias, folder, Hub id or ``tinyllama-shape``).
        source: What ``from_pretrained`` reads, or a description of the random initialisation.
        is_decoder: Llama-style (last-token head, EOS right padding) rather than BERT-style.
        tokenizer: The tokenizer, set up the protocol's way.
        label_names: Label id -> name of the base head (adapters bring their own heads).
        seed: Seeds the base head (and, for ``tinyllama-shape``, every weight).
    """

    name: str
    source: str
    is_decoder: bool
    tokenizer: PreTrainedTokenizerBase
    label_names: tuple[str, ...]
    seed: int

    @property
    def random_init(self) -> bool:
        return self.name == TINYLLAMA_SHAPE

    def load(self, dtype: str, device: torch.device | str) -> nn.Module:
        """A fresh base classifier in eval mode on ``device``; every call gives identical weights."""
        torch_dtype = DTYPES[dtype]
        if self.random_init:
            config = tinyllama_shape_config(len(self.label_names), self.tokenizer.pad_token_id)
            return build_random_llama(config, self.seed, torch_dtype, device)
        torch.manual_seed(self.seed)  # the base head is newly initialised: same seed, same head
        return load_pretrained_classifier(self.source, self.label_names, torch_dtype, self.is_decoder,
                                          self.tokenizer.pad_token_id, device)

    def skeleton(self) -> nn.Module:
        """The base classifier's modules and parameter shapes on the meta device: no weights read, no memory.

        Enough to check that an adapter fits this base before anything is loaded for real.
        """
        if self.random_init:
            return build_random_llama(tinyllama_shape_config(len(self.label_names), self.tokenizer.pad_token_id),
                                      self.seed, torch.float32, "meta")
        config = AutoConfig.from_pretrained(self.source, num_labels=len(self.label_names))
        with torch.device("meta"):
            return AutoModelForSequenceClassification.from_config(config)


def load_pretrained_classifier(
    source: str,
    label_names: tuple[str, ...] | None,
    dtype: torch.dtype,
    is_decoder: bool,
    pad_token_id: int | None,
    device: torch.device | str,
) -> nn.Module:
    """``AutoModelForSequenceClassification.from_pretrained`` on ``device`` in eval mode, quietly.

    With ``label_names`` None the folder's own head (a full fine-tuned model) is kept as saved.
    """
    kwargs = {}
    if label_names is not None:
        kwargs = dict(
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)},
        )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialised head" is expected for every base
    try:
        # Never unpickle weights: local folders were checked by resolve_model / prepare (check_model_folder).
        model = AutoModelForSequenceClassification.from_pretrained(source, dtype=dtype, use_safetensors=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    if is_decoder:
        model.config.pad_token_id = pad_token_id
    return model.to(device).eval()


def open_base(name: str, label_names: tuple[str, ...], seed: int) -> BaseModelSpec:
    """Resolve ``name`` and load its tokenizer (the weights are loaded per strategy by :meth:`BaseModelSpec.load`).

    Raises:
        ConfigError: If the alias, folder or Hub id cannot be resolved.
    """
    if name == TINYLLAMA_SHAPE:
        tokenizer = load_tokenizer(str(minilm_dir()), is_decoder=False)
        # As for the tiny-llama alias: [SEP] plays EOS, and EOS pads on the right (the protocol's choice).
        tokenizer.eos_token = tokenizer.sep_token
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        source = "random init, TinyLlama-1.1B shapes (22 layers, hidden 2048, 32/4 heads, MLP 5632, vocab 32000)"
        return BaseModelSpec(name, source, True, tokenizer, label_names, seed)
    source = resolve_model(name)
    decoder = is_decoder_source(source)
    return BaseModelSpec(name, source, decoder, load_tokenizer(source, decoder), label_names, seed)
