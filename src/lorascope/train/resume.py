"""Pick the checkpoint a killed run resumes from.

The Trainer writes a checkpoint file by file and ``trainer_state.json`` last, with no
temporary name; a kill mid-save leaves a folder that ``get_last_checkpoint`` still returns
and ``Trainer.train(resume_from_checkpoint=...)`` then rejects. A checkpoint is complete
when its ``trainer_state.json`` parses; incomplete ones are deleted.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def is_complete_checkpoint(folder: Path) -> bool:
    """True when ``folder`` holds a ``trainer_state.json`` that parses and names its step."""
    try:
        state = json.loads((folder / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


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
