"""Checked readers of model and adapter folders: every safetensors file lorascope reads goes through here.

Pickled checkpoints (``pytorch_model.bin``, ``adapter_model.bin``, ``*.pt``, ``*.pth``, ``*.pkl``)
run code when they are loaded, so a model or adapter folder that has only those is refused with
a message saying how to convert it; a ``.safetensors`` file whose header cannot be parsed (often
a pickle renamed) is refused too. The Trainer's own checkpoint files (optimizer, scheduler and RNG
state, written and read back by the same run) are the only pickles lorascope reads.

Every check raises :class:`~lorascope.errors.ConfigError` naming the folder or file, so the CLI
reports it on one line. Callers: :func:`lorascope.models.registry.resolve_model` (base models),
:func:`lorascope.models.load.load_run` (run folders), ``lorascope.serve.sources`` (adapters for
``bench``, ``serve`` and the server's run-time adapter loading).

Code that reads tensors itself (the weight lens, the serving runtime, stored representations)
opens the file with :func:`open_safetensors` or :func:`read_safetensors`: a truncated or damaged
file is the same one-line error there, whether it shows in the header or only in a tensor.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lorascope.errors import ConfigError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MODEL_WEIGHTS = "model.safetensors"
MODEL_INDEX = "model.safetensors.index.json"
# Written by the Trainer beside its checkpoints: training arguments, not weights.
_NOT_WEIGHTS = frozenset({"training_args.bin"})
_CONVERT_MODEL = ("convert it once, where you trust the file: load it with from_pretrained(folder) and save it with "
                  "save_pretrained(folder, safe_serialization=True)")
_CONVERT_ADAPTER = ("convert it once, where you trust the file: load it with PeftModel.from_pretrained(base, folder) and "
                    "save it with save_pretrained(folder, safe_serialization=True)")
_PEFT_PREFIX = "base_model.model."
# PEFT versions differ in whether saved head keys keep the modules_to_save wrapper segment.
_MODULES_TO_SAVE = re.compile(r"\.modules_to_save(\.[^.]+)?(?=\.)")


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object; anything else is a ConfigError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def check_safetensors_file(path: Path, convert_hint: str = _CONVERT_MODEL) -> None:
    """Refuse a file that is not safetensors (its header is parsed; no tensor is read).

    The header names every tensor's byte range, and the parser checks that they cover the file
    exactly: a truncated file is refused here, before any library loads it.

    Raises:
        ConfigError: the file cannot be parsed as safetensors; says so when it looks pickled.
    """
    with open_safetensors(path, "pt", convert_hint):
        pass


@contextlib.contextmanager
def open_safetensors(path: Path, framework: str = "pt", convert_hint: str = _CONVERT_MODEL) -> Iterator[Any]:
    """``safetensors.safe_open`` for lorascope's readers: the open file, whose damage is a ConfigError.

    Args:
        path: The ``.safetensors`` file.
        framework: ``pt`` (torch tensors) or ``np`` (numpy arrays).
        convert_hint: What to do about a pickled file, for its message.

    Raises:
        ConfigError: naming the file, when it is missing, pickled, truncated or otherwise not
            safetensors, found on opening or while a tensor is read. Errors raised by the caller's
            own code inside the block pass through unchanged.
    """
    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(str(path), framework=framework)
    except Exception as err:  # the parser's errors are bad input, whatever their class
        raise _not_safetensors(path, err, convert_hint) from None
    with handle as f:
        try:
            yield f
        except SafetensorError as err:  # a tensor's bytes did not decode
            raise _not_safetensors(path, err, convert_hint) from None


def read_safetensors(path: Path, framework: str = "np", names: set[str] | None = None) -> dict[str, Any]:
    """``{name: tensor}`` of a safetensors file (only ``names`` when given, those it holds), read
    with :func:`open_safetensors`.

    Raises:
        ConfigError: the file is missing, pickled, truncated or otherwise not safetensors.
    """
    with open_safetensors(path, framework) as f:
        keys = [k for k in f.keys() if names is None or k in names]  # noqa: SIM118 (safe_open is not a mapping)
        return {k: f.get_tensor(k) for k in keys}


def _not_safetensors(path: Path, err: Exception, convert_hint: str) -> ConfigError:
    if not path.is_file():
        return ConfigError(f"{path}: weights file not found")
    with path.open("rb") as fh:
        head = fh.read(4)
    # torch.save writes a zip archive (PK..) or, in its legacy format, a raw pickle (0x80).
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return ConfigError(f"{path}: not a safetensors file (it looks like a pickled PyTorch file); {convert_hint}")
    what = (str(err).splitlines() or [err.__class__.__name__])[0]
    return ConfigError(f"{path}: not a readable safetensors file ({what}); it may be truncated (a full disk, an "
                       "interrupted copy): copy or write it again")


def _refuse_pickles(folder: Path, expected: str, convert_hint: str) -> None:
    pickles = sorted(f for f in folder.iterdir() if f.suffix in PICKLE_SUFFIXES and f.name not in _NOT_WEIGHTS)
    if pickles:
        raise ConfigError(f"{pickles[0]}: pickled weights are not loaded (unpickling can run code) and there is no "
                          f"{expected}; {convert_hint}")


def check_model_folder(folder: Path, name: str) -> dict[str, Any]:
    """A Hugging Face model folder lorascope will load: a config with ``model_type`` and safetensors weights.

    Args:
        folder: The folder.
        name: What the user called it (for messages).

    Returns:
        The parsed ``config.json``.

    Raises:
        ConfigError: not a folder, no or malformed ``config.json``, only pickled weights, no
            weights, or a ``.safetensors`` file that is not one.
    """
    if not folder.is_dir():
        raise ConfigError(f"model '{name}': not a folder (expected a Hugging Face model folder with config.json)")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"model '{name}': folder has no config.json (expected a Hugging Face model folder)")
    config = read_json_object(folder / "config.json")
    if not config.get("model_type"):
        raise ConfigError(f"{folder / 'config.json'}: no 'model_type' (not a transformers model config)")
    for path in model_weight_files(folder):
        check_safetensors_file(path)
    return config


def model_weight_files(folder: Path) -> list[Path]:
    """The safetensors files a model folder's weights are in (one file, or the shards of an index)."""
    if (folder / MODEL_WEIGHTS).is_file():
        return [folder / MODEL_WEIGHTS]
    if (folder / MODEL_INDEX).is_file():
        index = read_json_object(folder / MODEL_INDEX)
        shards = sorted(set((index.get("weight_map") or {}).values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if not shards or missing:
            raise ConfigError(f"{folder / MODEL_INDEX}: names shard {missing[0] if missing else '(none)'!r}, which is not in the folder")
        return [folder / s for s in shards]
    found = sorted(folder.glob("*.safetensors"))
    if found:
        return found
    _refuse_pickles(folder, MODEL_WEIGHTS, _CONVERT_MODEL)
    raise ConfigError(f"{folder}: no {MODEL_WEIGHTS} (a model folder needs its weights as safetensors)")


def check_adapter_folder(folder: Path) -> dict[str, Any]:
    """A PEFT adapter folder lorascope will load: ``adapter_config.json`` and ``adapter_model.safetensors``.

    Call it before ``PeftModel.from_pretrained`` or any other reader of the folder: PEFT itself
    falls back to ``adapter_model.bin``.

    Returns:
        The parsed ``adapter_config.json``.

    Raises:
        ConfigError: no or malformed ``adapter_config.json``, only pickled weights, no weights,
            or an ``adapter_model.safetensors`` that is not safetensors.
    """
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ConfigError(f"{folder}: no {ADAPTER_CONFIG} (expected a PEFT adapter folder)")
    config = read_json_object(folder / ADAPTER_CONFIG)
    _check_lora_numbers(folder / ADAPTER_CONFIG, config)
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        _refuse_pickles(folder, ADAPTER_WEIGHTS, _CONVERT_ADAPTER)
        raise ConfigError(f"{folder}: no {ADAPTER_WEIGHTS} (expected a PEFT adapter folder)")
    check_safetensors_file(weights, _CONVERT_ADAPTER)
    return config


def _check_lora_numbers(path: Path, config: dict[str, Any]) -> None:
    """The rank and alpha that PEFT and the weight lens compute with: positive numbers where given.

    A wrong type there otherwise stops PEFT, or the lens's scaling, with a traceback far from the file.

    Raises:
        ConfigError: naming the file and the key.
    """
    for key in ("r", "lora_alpha"):
        value = config.get(key)
        if value is None:
            continue  # PEFT's default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{path}: '{key}' must be a positive number (got {value!r})")


def check_adapter_fits(folder: Path, model: Any, what: str, base_name: str) -> None:
    """Refuse an adapter whose tensors do not fit ``model`` (trained on another base).

    Compares the names and shapes in ``adapter_model.safetensors`` (its header only) with the
    modules and parameters of ``model``, which may live on the meta device: every adapted module
    must exist (and, for Linear layers, have the adapter's input and output sizes), and every
    other saved tensor (the classification head) must match the base parameter's shape.

    Args:
        folder: A PEFT adapter folder (checked with :func:`check_adapter_folder` first).
        model: The base classifier, as PEFT would wrap it.
        what: The adapter, for messages (``adapter 'sst2' (runs/x/adapter)``).
        base_name: The base model as the user named it.

    Raises:
        ConfigError: naming the adapter, the base and the first tensor that does not fit.
    """
    from torch import nn

    modules = dict(model.named_modules())
    params = dict(model.named_parameters())

    def refuse(detail: str) -> ConfigError:
        return ConfigError(f"{what} does not fit base model '{base_name}': {detail}; was it trained on another base?")

    with open_safetensors(folder / ADAPTER_WEIGHTS, "pt", _CONVERT_ADAPTER) as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            shape = list(f.get_slice(key).get_shape())
            name = _MODULES_TO_SAVE.sub("", key.removeprefix(_PEFT_PREFIX))
            if ".lora_" in name:
                module_name, _, tail = name.partition(".lora_")
                module = modules.get(module_name)
                if module is None:
                    raise refuse(f"it adapts '{module_name}', which the base does not have")
                if isinstance(module, nn.Linear) and tail in ("A.weight", "B.weight"):
                    # lora_A is [r, in_features], lora_B is [out_features, r].
                    got, size = (shape[1], module.in_features) if tail == "A.weight" else (shape[0], module.out_features)
                    if got != size:
                        raise refuse(f"'{key}' has shape {shape}, but '{module_name}' of the base has "
                                     f"{module.in_features} inputs and {module.out_features} outputs")
                continue
            param = params.get(name)
            if param is None:
                raise refuse(f"it holds '{name}', which the base does not have")
            if list(param.shape) != shape:
                raise refuse(f"'{name}' has shape {shape} in the adapter and {list(param.shape)} in the base")
