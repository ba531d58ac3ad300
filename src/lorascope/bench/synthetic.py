"""Synthetic LoRA adapters: real PEFT folders with random, non-zero weights, for timing without training.

Latency depends on shapes, not values, so a benchmark needs no trained adapter. A freshly
initialised LoRA has ``B = 0`` (its update is exactly zero), and PEFT copies the base head into the
adapter; either would let a broken serving path (an update or head silently not applied) pass the
correctness checks. So ``B`` and the head are drawn at random, from a generator seeded per adapter,
which also makes every adapter different from the others.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lorascope.data import get_task
from lorascope.models import prepare_for_method
from lorascope.models.base_recipe import BaseModelSpec
from lorascope.serve.sources import AdapterSource, write_sidecar

# Small enough that logits stay in a sane range, large enough that each adapter moves them visibly.
B_STD = 0.02
HEAD_STD = 0.1


def make_synthetic_adapters(
    base: BaseModelSpec,
    tasks: list[str],
    count: int,
    out: Path,
    *,
    r: int,
    alpha: float,
    targets: list[str] | None,
    seed: int,
    device: torch.device | str = "cpu",
) -> list[AdapterSource]:
    """Build ``count`` adapters on ``base`` and save them as PEFT folders ``out/<task>[_<i>]``.

    Args:
        base: The base model recipe (its weights are loaded once per adapter, in fp32).
        tasks: Task of each adapter, cycled; names are the task names (suffixed when repeated).
        count: How many adapters.
        out: Parent folder for the adapter folders.
        r: LoRA rank.
        alpha: LoRA alpha.
        targets: Adapted modules (None: PEFT's per-architecture default, q/v projections).
        seed: Base of the per-adapter seeds.
        device: Where to build them (the 1.1B shape initialises far faster on a GPU).

    Returns:
        One :class:`AdapterSource` per adapter, labelled ``origin="synthetic"``.
    """
    sources = []
    for i in range(count):
        task = tasks[i % len(tasks)]
        name = task if i < len(tasks) else f"{task}_{i}"
        # Saved in fp32 like a trained adapter; the benchmark casts as it loads.
        model, _ = prepare_for_method(base.load("fp32", device), "lora", r=r, alpha=alpha, dropout=0.0, targets=targets)
        generator = torch.Generator().manual_seed(seed * 1000 + i + 1)
        with torch.no_grad():
            for param_name, param in model.named_parameters():
                if "lora_B" in param_name:
                    param.copy_(torch.randn(param.shape, generator=generator) * B_STD)
                elif "modules_to_save" in param_name:
                    param.copy_(torch.randn(param.shape, generator=generator) * HEAD_STD)
        folder = out / name
        model.save_pretrained(str(folder))  # PEFT annotates str (it takes any path)
        spec = get_task(task)
        # The head has the base's width; a task with another label count keeps generic names.
        label_names = spec.label_names if len(spec.label_names) == len(base.label_names) else base.label_names
        write_sidecar(folder, spec, label_names, synthetic=True)
        sources.append(AdapterSource(name, folder, spec.name, label_names, base.source, "synthetic", spec))
        del model
    return sources
