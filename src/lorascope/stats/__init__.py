"""Statistics for honest comparisons across a few seeds: paired tests, intervals, corrections.

Every test returns a :class:`TestResult` recording its name, n and exact p-value (and, for the
permutation test, the smallest p attainable with that n).
"""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "ConfidenceInterval": ".bootstrap",
    "bootstrap_ci": ".bootstrap",
    "Correction": ".corrections",
    "bonferroni": ".corrections",
    "bonferroni_alpha": ".corrections",
    "correct": ".corrections",
    "holm": ".corrections",
    "cohens_d_paired": ".effect",
    "hierarchical_interval": ".hierarchical",
    "h1a_verdict": ".hypotheses",
    "h1b_verdict": ".hypotheses",
    "paired_t_test": ".paired",
    "t_interval": ".paired",
    "min_attainable_p": ".permutation",
    "sign_flip_test": ".permutation",
    "seeds_needed": ".power",
    "fieller_interval": ".ratio",
    "TestResult": ".result",
    "Verdict": ".verdict",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
