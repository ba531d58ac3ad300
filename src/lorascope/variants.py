"""Method variants in the analyses: how runs are grouped, and which groups are compared.

A study names each run's method by its *label*: ``lora``, ``full``, or a variant such as
``lora_r64`` (see :attr:`lorascope.run_folder.RunRecord.label`). Every label other than ``full``
is compared with ``full``. The *primary* comparison, the one the verdicts and the report's
opening answer are about, is ``lora`` when the study has it, else its first LoRA variant in
natural name order (``lora_r4`` before ``lora_r8`` before ``lora_r64``).
"""

from __future__ import annotations

import re

FULL = "full"


def natural_key(label: str) -> tuple[int | str, ...]:
    """Sort key that orders the numbers inside names by value: ``lora_r8`` < ``lora_r64``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label))


def compared_labels(methods: dict[str, str]) -> list[str]:
    """Every label compared with ``full``: ``lora`` first, then LoRA variants, then full-FT variants.

    Args:
        methods: label -> its method (``lora`` or ``full``).
    """
    others = [label for label in methods if label != FULL]
    return sorted(others, key=lambda label: (label != "lora", methods[label] != "lora", natural_key(label)))


def primary_label(methods: dict[str, str]) -> str | None:
    """The label of the primary comparison with ``full`` (None without a LoRA run)."""
    lora = [label for label in compared_labels(methods) if methods[label] == "lora"]
    return lora[0] if lora else None


def recorded_primary(primary: str | None) -> str:
    """The primary LoRA label an analysis recorded; ``lora`` for results written before variants existed."""
    return primary or "lora"


def display_name(label: str) -> str:
    """How a report names a method: ``LoRA``, ``full fine-tuning``, or ``LoRA (lora_r64)``."""
    return {"lora": "LoRA", FULL: "full fine-tuning"}.get(label, f"LoRA ({label})")
