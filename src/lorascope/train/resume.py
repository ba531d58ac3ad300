"""Pick the checkpoint a killed run resumes from.

The Trainer writes a checkpoint file by file with no temporary name: weights, optimizer,
scheduler, RNG state, and ``trainer_state.json`` last. It also deletes checkpoints file by file
(rotation during training, the last non-best checkpoint when training ends). A kill during a save
leaves a folder without ``trainer_state.json``; a kill during a deletion can leave one whose
``trainer_state.json`` survives while its weights or optimizer state are gone. Either is a folder
that ``get_last_checkpoint`` still returns and that ``Trainer.train(resume_from_checkpoint=...)``
then rejects or, worse, resumes without its optimizer state. A checkpoint is complete when its
``trainer_state.json`` parses and every file needed to resume is present; incomplete ones newer
than the newest complete one are deleted.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

TRAINER_STATE = "trainer_state.json"
# Written by Trainer._save_checkpoint besides the weights (save_only_model is off).
TRAINING_FILES = ("optimizer.pt", "scheduler.pt")
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors")
WEIGHT_INDEX = "model.safetensors.index.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def has_weights(folder: Path) -> bool:
    """True when ``folder`` holds a whole model: one weights file, or an index and all its shards."""
    if any((folder / name).is_file() for name in WEIGHT_FILES):
        return True
    index = _read_json(folder / WEIGHT_INDEX)
    shards = set((index or {}).get("weight_map", {}).values())
    return bool(shards) and all((folder / shard).is_file() for shard in shards)


def is_complete_checkpoint(folder: Path) -> bool:
    """True when ``folder`` holds a parseable ``trainer_state.json`` naming its step and everything to resume."""
    state = _read_json(folder / TRAINER_STATE)
    return (
        state is not None
        and "global_step" in state
        and all((folder / name).is_file() for name in TRAINING_FILES)
        and any(folder.glob("rng_state*.pth"))
        and has_weights(folder)
    )


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest complete ``checkpoint-<step>`` under ``checkpoints``; deletes newer incomplete ones.

    Returns None when there is none (the run starts from scratch).
    """
    if not checkpoints.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in checkpoints.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
        reverse=True,
    )
    for _, folder in found:
        if is_complete_checkpoint(folder):
            return str(folder)
        shutil.rmtree(folder, ignore_errors=True)
    return None
