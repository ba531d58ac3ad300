"""Correctness checks: every strategy computes what the single-adapter PEFT model computes.

The reference for adapter ``a`` is a freshly loaded PEFT model holding only ``a`` (the way each
adapter was trained and saved). Against it:

* PEFT with 2 or 3 adapters (``set_adapter``) and PEFT mixed batches: max |logit difference|
  under ``peft_atol`` (1e-5 in fp32; the protocol's bound);
* the lorascope runtime on every path: under ``runtime_atol`` (1e-4 in fp32: merging
  ``W + s·B·A`` and the batched gather-matmul reorder floating-point sums);
* the merged model: the fraction of rows whose predicted label agrees (must be all of them), with
  its max |logit difference| under ``runtime_atol`` too.

Timing a wrong answer would be meaningless, so a failed check is reported next to the table.
"""

from __future__ import annotations

import gc
from dataclasses import asdict, dataclass
from typing import Any

import torch

from lorascope.bench.inputs import Batch
from lorascope.bench.strategies import CATALOGUE, Group, LoadContext, load_peft, make_call

SWITCHING = ("peft_switch2", "peft_switch3", "runtime_switch3")
MIXED = ("peft_mixed3", "runtime_mixed3")
SINGLE = ("lora_separate", "lora_merged", "runtime_single")


@dataclass(frozen=True)
class CheckResult:
    """One strategy compared with the single-adapter PEFT references.

    Attributes:
        strategy: The strategy checked.
        compared_with: What the reference was.
        rows: Rows compared (over all adapters checked).
        max_abs_diff: Largest |logit difference|.
        tolerance: Bound on ``max_abs_diff``.
        agreement: Fraction of rows with the same predicted label.
        passed: Whether the check holds (difference within tolerance; for the merged model also
            every prediction agreeing).
    """

    strategy: str
    compared_with: str
    rows: int
    max_abs_diff: float
    tolerance: float
    agreement: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_logits(ctx: LoadContext, batches: list[Batch]) -> dict[str, list[torch.Tensor]]:
    """Adapter -> logits of its own single-adapter PEFT model on each batch, float64 on CPU, [batch, n_labels]."""
    refs: dict[str, list[torch.Tensor]] = {}
    for source in ctx.adapters:
        model = load_peft(ctx, [source])  # one at a time: a 1.1B base costs GBs per copy
        with torch.inference_mode():
            refs[source.name] = [model(**b.inputs).logits.double().cpu() for b in batches]
        del model
        gc.collect()
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    return refs


def _compare(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[int, float, float]:
    got = torch.cat([g for g, _ in pairs])
    want = torch.cat([w for _, w in pairs])
    agree = float((got.argmax(-1) == want.argmax(-1)).double().mean())
    return got.shape[0], float((got - want).abs().max()), agree


def check_strategy(
    strategy: str, group: Group, batches: list[Batch], refs: dict[str, list[torch.Tensor]], peft_atol: float, runtime_atol: float
) -> CheckResult | None:
    """Compare ``strategy`` with the references on ``batches``; None for ``full_ft`` (a different model)."""
    if strategy == "full_ft":
        return None
    call = make_call(strategy, group)
    names = group.adapters
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    if strategy in SWITCHING:
        # call(i, ·) serves adapter names[i % n]: step i picks each adapter in turn.
        for i, name in enumerate(names):
            pairs += [(call(i, b).double().cpu(), refs[name][k]) for k, b in enumerate(batches)]
        compared = f"single-adapter PEFT of each of {', '.join(names)}"
    elif strategy in MIXED:
        for k, b in enumerate(batches):
            want = torch.stack([refs[a][k][row] for row, a in enumerate(b.row_adapters)])
            pairs.append((call(0, b).double().cpu(), want))
        compared = "single-adapter PEFT of each row's adapter"
    else:
        pairs = [(call(0, b).double().cpu(), refs[names[0]][k]) for k, b in enumerate(batches)]
        compared = f"single-adapter PEFT of {names[0]}"
    rows, diff, agree = _compare(pairs)
    tolerance = peft_atol if strategy.startswith("peft_") else runtime_atol
    passed = diff <= tolerance and (strategy != "lora_merged" or agree == 1.0)
    return CheckResult(strategy, compared, rows, diff, tolerance, agree, passed)


def run_checks(
    strategies: list[str], groups: dict[str, Group], ctx: LoadContext, batches: list[Batch], peft_atol: float, runtime_atol: float
) -> list[CheckResult]:
    """Check every strategy that serves adapters; returns one result per checked strategy."""
    refs = reference_logits(ctx, batches)
    results = []
    for strategy in strategies:
        result = check_strategy(strategy, groups[CATALOGUE[strategy][0]], batches, refs, peft_atol, runtime_atol)
        if result is not None:
            results.append(result)
    return results
