"""Pipeline controls computed with every drift analysis.

Drift values of 0.6–0.9 for a rank-8 LoRA on q/v alone are suspicious (the reference study
reported them): the early layers of such a model barely change. Three controls catch the usual
bugs — misaligned samples, different tokenisation, a broken pooling:

- base vs base: drift must be 0 (within ``tolerance``);
- base vs LoRA at initialisation (B = 0, so the function is unchanged): drift must be 0;
- base vs base with the sample order shuffled: drift must be large (debiased CKA near 0),
  showing that the measure does see misalignment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.similarity import layer_similarity

SHUFFLED_MIN_DEBIASED_DRIFT = 0.5


@dataclass
class ControlResult:
    name: str
    expectation: str
    max_drift: float  # biased, over layers
    mean_drift: float
    mean_drift_debiased: float
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


class MisalignedRepresentations(LorascopeError):
    """A zero-drift control failed: the compared representations are not of the same samples."""


def _control(name: str, expectation: str, base: np.ndarray, other: np.ndarray, passed_fn) -> ControlResult:
    sim = layer_similarity(base, other)
    drift, drift_db = 1.0 - sim.cka, 1.0 - sim.cka_debiased
    result = ControlResult(name, expectation, float(np.max(np.abs(drift))), float(np.mean(drift)),
                           float(np.mean(drift_db)), False)
    result.passed = bool(passed_fn(result))
    return result


def run_controls(base: np.ndarray, lora_init: np.ndarray, seed: int = 0, tolerance: float = 1e-6) -> list[ControlResult]:
    """The three controls on pooled states ``[n_layers + 1, n, d]``.

    Raises:
        MisalignedRepresentations: base vs base or base vs LoRA-at-init drift exceeds ``tolerance``.
    """
    order = np.random.default_rng(seed).permutation(base.shape[1])
    results = [
        _control("base_vs_base", f"drift = 0 (|drift| < {tolerance:g})", base, base.copy(),
                 lambda r: r.max_drift < tolerance),
        _control("base_vs_lora_init", f"drift = 0 (|drift| < {tolerance:g}); LoRA B = 0 changes nothing", base, lora_init,
                 lambda r: r.max_drift < tolerance),
        _control("base_vs_shuffled_base", f"drift large (debiased drift > {SHUFFLED_MIN_DEBIASED_DRIFT})", base,
                 base[:, order], lambda r: r.mean_drift_debiased > SHUFFLED_MIN_DEBIASED_DRIFT),
    ]
    for r in results[:2]:
        if not r.passed:
            raise MisalignedRepresentations(
                f"control {r.name} failed: drift {r.max_drift:.3g} where 0 is expected — the representations are "
                "misaligned (different samples, order, tokenisation or pooling)"
            )
    return results
