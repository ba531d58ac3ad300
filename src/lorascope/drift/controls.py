"""Pipeline controls computed with every drift analysis, each through the real comparison path.

Drift values of 0.6–0.9 for a rank-8 LoRA on q/v alone are suspicious (the reference study
reported them): the early layers of such a model barely change. Three controls catch the usual
bugs — misaligned samples, different tokenisation, a broken pooling — and each can fail:

- base vs base: a second, independent load and extraction of the base, in another sample order
  and batch size, re-aligned to the first by sample id: drift must be 0 (within ``tolerance``).
  Mis-pairing rows and ids, order-dependent extraction or batch-dependent padding all show here;
  comparing an array with its own copy could not fail.
- base vs LoRA at initialisation (B = 0, so the function is unchanged): drift must be 0.
- base vs the second extraction *not* re-aligned (rows in another sample order): drift must be
  large (debiased CKA near 0), showing that the measure sees misalignment at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.similarity import layer_similarity

SHUFFLED_MIN_DEBIASED_DRIFT = 0.5
# Two extractions of one model differ only by float reassociation across batch shapes (about
# 1e-7 relative in pooled states); CKA sees that as drift of order 1e-12.
ZERO_DRIFT_TOLERANCE = 1e-6


@dataclass
class ControlResult:
    """One pipeline control's outcome: its drifts (1 − CKA, over layers) and whether it met its expectation."""

    name: str
    expectation: str
    max_drift: float  # biased, over layers
    mean_drift: float
    mean_drift_debiased: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MisalignedRepresentations(LorascopeError):
    """A zero-drift control failed: the compared representations are not of the same samples."""


def align_to(states: np.ndarray, ids: list[str], reference_ids: list[str], name: str) -> np.ndarray:
    """Rows of ``states`` ``[L, n, d]`` (in ``ids`` order) reordered to ``reference_ids`` order.

    Raises:
        MisalignedRepresentations: the two id lists are not the same set of samples.
    """
    position = {sample: i for i, sample in enumerate(ids)}
    if len(position) != len(ids) or sorted(position) != sorted(reference_ids):
        raise MisalignedRepresentations(f"{name}: extracted a different set of samples than the base")
    return states[:, [position[sample] for sample in reference_ids]]


def _control(name: str, expectation: str, base: np.ndarray, other: np.ndarray,
             passed_fn: Callable[[ControlResult], bool]) -> ControlResult:
    sim = layer_similarity(base, other)
    drift, drift_db = 1.0 - sim.cka, 1.0 - sim.cka_debiased
    result = ControlResult(name, expectation, float(np.max(np.abs(drift))), float(np.mean(drift)),
                           float(np.mean(drift_db)), False)
    result.passed = bool(passed_fn(result))
    return result


def run_controls(
    base: np.ndarray, replica_aligned: np.ndarray, replica_as_extracted: np.ndarray, lora_init: np.ndarray,
    tolerance: float = ZERO_DRIFT_TOLERANCE,
) -> list[ControlResult]:
    """The three controls on pooled states, every array ``[n_layers + 1, n, d]``.

    Args:
        base: the base model's states, rows in the study's sample order.
        replica_aligned: a second extraction of the base re-aligned to ``base`` by sample id.
        replica_as_extracted: the same second extraction in its own (shuffled) row order.
        lora_init: the base wrapped in a fresh LoRA adapter, rows in the study's order.
        tolerance: largest per-layer |drift| accepted as zero.

    Raises:
        MisalignedRepresentations: base vs base or base vs LoRA-at-init drift exceeds ``tolerance``,
            or the shuffled control does not show large drift (the measure would be blind).
    """
    results = [
        _control("base_vs_base", f"drift = 0 (|drift| < {tolerance:g}) for an independent second extraction",
                 base, replica_aligned, lambda r: r.max_drift < tolerance),
        _control("base_vs_lora_init", f"drift = 0 (|drift| < {tolerance:g}); LoRA B = 0 changes nothing", base, lora_init,
                 lambda r: r.max_drift < tolerance),
        _control("base_vs_shuffled_base", f"drift large (debiased drift > {SHUFFLED_MIN_DEBIASED_DRIFT}) for the second "
                 "extraction in its shuffled order", base, replica_as_extracted,
                 lambda r: r.mean_drift_debiased > SHUFFLED_MIN_DEBIASED_DRIFT),
    ]
    for r in results[:2]:
        if not r.passed:
            raise MisalignedRepresentations(
                f"control {r.name} failed: drift {r.max_drift:.3g} where 0 is expected — the representations are "
                "misaligned (different samples, order, tokenisation or pooling)"
            )
    if not results[2].passed:
        raise MisalignedRepresentations(
            f"control {results[2].name} failed: debiased drift {results[2].mean_drift_debiased:.3g} for misaligned samples "
            f"(expected > {SHUFFLED_MIN_DEBIASED_DRIFT}): the measure does not see which sample is which"
        )
    return results
