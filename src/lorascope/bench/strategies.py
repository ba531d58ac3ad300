"""The serving strategies the benchmark compares, each a model plus one call per request.

Models are built in *groups*; a group's model may serve several strategies whose per-request
state is fully reset by every call (PEFT with three adapters serves both per-request switching and
mixed batches; so does one lorascope runtime), which halves the memory a large base needs:

========  ===================================  ==========================================
group     model                                strategies
========  ===================================  ==========================================
full      full fine-tuned model (or the base   full_ft
          standing in: same shapes and cost)
merged    PEFT ``merge_and_unload`` (plain)    lora_merged
separate  PEFT, one adapter, unmerged          lora_separate
peft2     PEFT, two adapters                   peft_switch2 (``set_adapter`` per request)
peft3     PEFT, three adapters                 peft_switch3, peft_mixed3 (``adapter_names=``)
runtime1  lorascope runtime, one adapter       runtime_single (merged path)
runtime3  lorascope runtime, three adapters    runtime_switch3 (merged path, cached merges),
                                               runtime_mixed3 (per-row BGMV path)
========  ===================================  ==========================================

A "request" is one batch; switching strategies serve request ``k`` with adapter ``k mod n``,
mixed-batch strategies serve each row with the adapter of the task the row came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from peft import PeftModel
from torch import nn

from lorascope.bench.inputs import Batch
from lorascope.models.base_recipe import DTYPES, BaseModelSpec
from lorascope.models.load import from_pretrained_classifier
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.sources import AdapterSource

# strategy -> (group, adapters needed, description)
CATALOGUE: dict[str, tuple[str, int, str]] = {
    "full_ft": ("full", 0, "full fine-tuned model"),
    "lora_merged": ("merged", 1, "LoRA merged into the weights (PEFT merge_and_unload)"),
    "lora_separate": ("separate", 1, "LoRA unmerged, one adapter (PEFT)"),
    "peft_switch2": ("peft2", 2, "PEFT, 2 adapters loaded, set_adapter per request"),
    "peft_switch3": ("peft3", 3, "PEFT, 3 adapters loaded, set_adapter per request"),
    "peft_mixed3": ("peft3", 3, "PEFT, 3 adapters, mixed-adapter batches (adapter_names=)"),
    "runtime_single": ("runtime1", 1, "lorascope runtime, one adapter stream (merged path)"),
    "runtime_switch3": ("runtime3", 3, "lorascope runtime, 3 adapters, switch per request (cached merges)"),
    "runtime_mixed3": ("runtime3", 3, "lorascope runtime, 3 adapters, mixed-adapter batches (BGMV)"),
}

# group -> adapters it loads (the first n of those given)
GROUP_ADAPTERS = {"full": 0, "merged": 1, "separate": 1, "peft2": 2, "peft3": 3, "runtime1": 1, "runtime3": 3}

Call = Callable[[int, Batch], torch.Tensor]


@dataclass
class Group:
    """A loaded model shared by one or more strategies.

    Attributes:
        name: Group name (see the module table).
        model: What runs requests: a plain or PEFT model, or a :class:`MultiAdapterRuntime`.
        modules: Modules whose tensors belong to the group (for memory accounting).
        adapters: Adapter names loaded, in order.
        load_s: Seconds from nothing to ready (base weights from disk or random init, adapters, merge).
    """

    name: str
    model: nn.Module | MultiAdapterRuntime
    modules: list[nn.Module]
    adapters: list[str]
    load_s: float


@dataclass
class LoadContext:
    """What every group is built from."""

    base: BaseModelSpec
    adapters: list[AdapterSource]
    dtype: str
    device: torch.device
    full_model: Path | None
    merged_cache_size: int


def load_peft(ctx: LoadContext, adapters: list[AdapterSource]) -> PeftModel:
    """A fresh base with `adapters` loaded unmerged through PEFT (the first one active)."""
    model = PeftModel.from_pretrained(ctx.base.load(ctx.dtype, ctx.device), adapters[0].folder, adapter_name=adapters[0].name)
    for source in adapters[1:]:
        model.load_adapter(source.folder, adapter_name=source.name)
    # PEFT keeps adapter weights in fp32 under a bf16 base (autocast_adapter_dtype); .to() only moves.
    return model.to(ctx.device).eval()


def load_group(name: str, ctx: LoadContext) -> Group:
    """Build group ``name`` from disk (or random init), timing it end to end."""
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    start = time.perf_counter()
    adapters = ctx.adapters[: GROUP_ADAPTERS[name]]
    model: nn.Module | MultiAdapterRuntime
    modules: list[nn.Module]
    if name == "full":
        if ctx.full_model is None:
            model = ctx.base.load(ctx.dtype, ctx.device)
        else:
            model = from_pretrained_classifier(ctx.full_model, None, DTYPES[ctx.dtype], ctx.base.is_decoder,
                                               ctx.base.tokenizer.pad_token_id, ctx.device)
        modules = [model]
    elif name == "merged":
        merged: nn.Module = load_peft(ctx, adapters).merge_and_unload().eval()
        model, modules = merged, [merged]
    elif name in ("separate", "peft2", "peft3"):
        model = load_peft(ctx, adapters)
        modules = [model]
    else:
        folders = {a.name: a.folder for a in adapters}
        model = MultiAdapterRuntime.from_folders(ctx.base.load(ctx.dtype, ctx.device), folders, ctx.merged_cache_size)
        modules = [model.model]
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    return Group(name, model, modules, [a.name for a in adapters], time.perf_counter() - start)


def _runtime_inputs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    inputs = dict(batch.inputs)
    return inputs.pop("input_ids"), inputs.pop("attention_mask"), inputs


def make_call(strategy: str, group: Group) -> Call:
    """The per-request function of ``strategy``: ``call(step, batch)`` -> logits [batch, n_labels]."""
    # The casts name what load_group built for the strategy's group (see CATALOGUE): a plain or PEFT
    # model for full/merged/separate, a PeftModel for peft2/peft3, a MultiAdapterRuntime for runtime1/runtime3.
    names = group.adapters

    if strategy in ("full_ft", "lora_merged", "lora_separate"):
        module = cast(nn.Module, group.model)

        def call(step: int, batch: Batch) -> torch.Tensor:
            logits: torch.Tensor = module(**batch.inputs).logits
            return logits
    elif strategy in ("peft_switch2", "peft_switch3"):
        peft = cast(PeftModel, group.model)

        def call(step: int, batch: Batch) -> torch.Tensor:
            peft.set_adapter(names[step % len(names)])
            logits: torch.Tensor = peft(**batch.inputs).logits
            return logits
    elif strategy == "peft_mixed3":
        peft = cast(PeftModel, group.model)

        def call(step: int, batch: Batch) -> torch.Tensor:
            logits: torch.Tensor = peft(**batch.inputs, adapter_names=batch.row_adapters).logits
            return logits
    elif strategy == "runtime_single":
        runtime = cast(MultiAdapterRuntime, group.model)

        def call(step: int, batch: Batch) -> torch.Tensor:
            ids, mask, rest = _runtime_inputs(batch)
            return runtime.predict_logits(ids, mask, names[0], mode="merged", **rest)
    elif strategy == "runtime_switch3":
        runtime = cast(MultiAdapterRuntime, group.model)

        def call(step: int, batch: Batch) -> torch.Tensor:
            ids, mask, rest = _runtime_inputs(batch)
            return runtime.predict_logits(ids, mask, names[step % len(names)], mode="auto", **rest)
    elif strategy == "runtime_mixed3":
        runtime = cast(MultiAdapterRuntime, group.model)

        def call(step: int, batch: Batch) -> torch.Tensor:
            ids, mask, rest = _runtime_inputs(batch)
            # Forced BGMV even when a batch happens to hold one adapter: this strategy measures that path.
            return runtime.predict_logits(ids, mask, batch.row_adapters, mode="bgmv", **rest)
    else:
        raise KeyError(strategy)

    def guarded(step: int, batch: Batch) -> torch.Tensor:
        with torch.inference_mode():
            return call(step, batch)

    return guarded


def groups_for(strategies: list[str]) -> list[str]:
    """Distinct groups the strategies need, in first-use order."""
    out: list[str] = []
    for s in strategies:
        if CATALOGUE[s][0] not in out:
            out.append(CATALOGUE[s][0])
    return out
