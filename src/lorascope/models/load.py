"""Load a base model as a sequence classifier with a tokenizer set up the protocol's way."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers import logging as hf_logging

from lorascope.errors import ConfigError
from lorascope.models.device import resolve_device
from lorascope.models.folders import check_adapter_folder, check_model_folder
from lorascope.models.registry import resolve_model
from lorascope.run_folder import RunFolder

if TYPE_CHECKING:
    from lorascope.models.adapt import AdaptedModel

log = logging.getLogger(__name__)

# Encoders use the tokenizer's pair encoding and a [CLS]/pooler head; every other architecture
# is treated as a decoder (last-token head, EOS padding on the right).
ENCODER_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert", "mpnet", "modernbert", "camembert"}
)


class _NewHead(TypedDict, total=False):
    """The config settings of a new classification head (none: the saved head is kept)."""

    num_labels: int
    id2label: dict[int, str]
    label2id: dict[str, int]


@dataclass
class LoadedModel:
    """A model and its tokenizer as loaded, with whether it is a decoder and where it came from."""

    model: AdaptedModel  # the base as loaded, or wrapped by PEFT (a LoRA run)
    tokenizer: PreTrainedTokenizerBase
    is_decoder: bool
    source: str  # what from_pretrained was given

    @property
    def model_type(self) -> str:
        return self.model.config.model_type


def load_tokenizer(source: str, is_decoder: bool) -> PreTrainedTokenizerBase:
    """The model's tokenizer; decoders pad on the right with EOS (the protocol's choice)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:  # no tokenizer files, or ones transformers cannot read
        raise ConfigError(f"model '{source}': cannot load its tokenizer ({_first_line(err)})") from None
    if is_decoder:
        if tokenizer.eos_token is None:
            raise ConfigError(f"model '{source}': its tokenizer has no EOS token, needed to pad a decoder")
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
    return tokenizer


def is_decoder_source(source: str) -> bool:
    """Whether ``source`` (a resolved model folder or Hub id) is a decoder, read from its config.

    Raises:
        ConfigError: the config cannot be had (a Hub id that does not exist, no network) or is
            not one transformers knows.
    """
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:  # transformers' ways of saying "no such model" / "unknown model type"
        raise ConfigError(f"model '{source}': cannot read its config ({_first_line(err)})") from None
    return config.model_type not in ENCODER_MODEL_TYPES


def _head_width(source: str) -> int | None:
    """The output width of the sequence-classification head saved in ``source``, None when it has none."""
    config = AutoConfig.from_pretrained(source)
    if not any(a.endswith("ForSequenceClassification") for a in (config.architectures or [])):
        return None
    return int(config.num_labels)


def _first_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else err.__class__.__name__


def from_pretrained_classifier(
    source: str | Path,
    label_names: tuple[str, ...] | None,
    dtype: torch.dtype,
    is_decoder: bool,
    pad_token_id: int | None,
    device: torch.device | str = "cpu",
    *,
    name: str | None = None,
    new_head_width: bool = False,
) -> PreTrainedModel:
    """The one call to ``AutoModelForSequenceClassification.from_pretrained``: quiet, safetensors only, eval mode.

    Args:
        source: A resolved folder or Hub id.
        label_names: Label id -> name for a new head; None keeps the folder's own head (a full
            fine-tuned model) as saved.
        is_decoder: Sets ``pad_token_id`` on the config (Llama-style heads read the last non-pad token).
        name: What the user called the model, for errors (defaults to ``source``).
        new_head_width: The saved head has another width and is replaced (the backbone is kept).
    """
    kwargs: _NewHead = {}
    if label_names is not None:
        kwargs = {
            "num_labels": len(label_names),
            "id2label": dict(enumerate(label_names)),
            "label2id": {n: i for i, n in enumerate(label_names)},
        }
    verbosity = hf_logging.get_verbosity()
    # The "newly initialized head" load report is expected for every base model: keep it quiet.
    hf_logging.set_verbosity(logging.ERROR)  # set_verbosity_error(), which transformers leaves unannotated
    try:
        net = AutoModelForSequenceClassification.from_pretrained(
            source,
            dtype=dtype,
            trust_remote_code=False,
            use_safetensors=True,  # never unpickle weights; local folders were checked by resolve_model
            ignore_mismatched_sizes=new_head_width,  # only the head can mismatch: its width is all that changed
            **kwargs,
        )
    except OSError as err:  # a Hub repository without the files: the user's model, not a bug
        raise ConfigError(f"model '{name or source}': cannot load its weights ({_first_line(err)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if is_decoder:
        net.config.pad_token_id = pad_token_id
    model: PreTrainedModel = net.to(device).eval()
    return model


def as_device(device: torch.device | str) -> torch.device:
    """A device setting (``auto``, ``cpu``, ``cuda:1`` …) or a ``torch.device`` as a ``torch.device``."""
    return device if isinstance(device, torch.device) else resolve_device(device)


def load_classifier(
    model: str,
    label_names: tuple[str, ...],
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> LoadedModel:
    """A ``*ForSequenceClassification`` model with a fresh head initialised from ``seed``.

    Args:
        model: alias (``minilm``, ``smollm2``, ``tinyllama``, ``tiny-llama``), folder or Hub id.
        label_names: label id -> name; sets ``num_labels``, ``id2label`` and ``label2id``.
        seed: seeds the classification head's initialisation (the backbone is pretrained).
        dtype: parameter dtype.
        device: where the model is put (a ``torch.device`` or a setting such as ``auto``). The
            default is the CPU because training loads there and lets the Trainer place the model;
            every analysis passes its own ``device`` setting.
    """
    device = as_device(device)  # an absent device fails before anything is read
    source = resolve_model(model)
    decoder = is_decoder_source(source)
    tokenizer = load_tokenizer(source, decoder)
    old_width = _head_width(source)
    if old_width is not None and old_width != len(label_names):
        # A classifier saved for another label count: its head cannot be reused, the backbone can.
        log.warning(f"model '{model}': its classification head has {old_width} outputs and the task has "
                    f"{len(label_names)} labels; the head is initialised afresh (seed {seed})")
    # The head is initialised on the CPU from the CPU generator, then moved: the same seed gives the
    # same head on every device.
    torch.manual_seed(seed)
    net = from_pretrained_classifier(source, label_names, dtype, decoder, tokenizer.pad_token_id, device, name=model,
                                     new_head_width=old_width is not None)
    return LoadedModel(net, tokenizer, decoder, source)


def load_run(run_dir: str | Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> LoadedModel:
    """Reload a trained run folder written by ``lorascope train``.

    LoRA runs hold a PEFT adapter folder (``adapter/``, loadable with ``PeftModel.from_pretrained``
    on the base model); full runs hold a model folder (``model/``, loadable with
    ``AutoModelForSequenceClassification.from_pretrained``). Returns the model in eval mode on
    ``device`` (see :func:`load_classifier`).
    """
    device = as_device(device)
    folder_of_run = RunFolder(Path(run_dir))
    run = folder_of_run.path
    info = folder_of_run.successful_record()
    if folder_of_run.adapter_dir.is_dir():
        from peft import PeftModel

        check_adapter_folder(folder_of_run.adapter_dir)  # PEFT would fall back to a pickled adapter_model.bin
        if info.base_model_source is None or info.label_names is None:
            missing = "base_model_source" if info.base_model_source is None else "label_names"
            raise ConfigError(f"{folder_of_run.metrics_path}: no '{missing}' (not written by lorascope train?)")
        base = load_classifier(info.base_model_source, tuple(info.label_names), seed=0, dtype=dtype, device=device)
        # Read straight onto the base's device (PEFT would otherwise read them onto the first GPU).
        base.model = PeftModel.from_pretrained(base.model, folder_of_run.adapter_dir, torch_device=str(device))
        base.model.eval()
        return base
    folder = folder_of_run.model_dir
    if not folder.is_dir():
        raise ConfigError(f"{run}: has neither adapter/ nor model/ (was it trained with save_model=false?)")
    check_model_folder(folder, str(folder))
    recorded = getattr(info, "is_decoder", None)  # kept as written in metrics.json
    decoder = recorded if isinstance(recorded, bool) else is_decoder_source(str(folder))
    tokenizer = load_tokenizer(str(folder), decoder)
    net = from_pretrained_classifier(folder, None, dtype, decoder, tokenizer.pad_token_id, device)
    return LoadedModel(net, tokenizer, decoder, str(folder))
