"""Statistics for honest comparisons across a few seeds: paired tests, intervals, corrections.

Every test returns a :class:`TestResult` recording its name, n and exact p-value (and, for the
permutation test, the smallest p attainable with that n). A study's verdicts form one declared
family, adjusted together (:mod:`lorascope.stats.family`); relative drift is analysed on the log
scale (:mod:`lorascope.stats.logratio`); metric differences carry the dev set's sampling error
(:mod:`lorascope.stats.crossed`).
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
    "CrossedDifference": ".crossed",
    "crossed_difference": ".crossed",
    "cohens_d_paired": ".effect",
    "HypothesisFamily": ".family",
    "apply_family": ".family",
    "correct_study": ".family",
    "hierarchical_interval": ".hierarchical",
    "hierarchical_log_ratio_interval": ".hierarchical",
    "LogRatioSummary": ".logratio",
    "log_ratio_summary": ".logratio",
    "log_ratios": ".logratio",
    "h1a_verdict": ".hypotheses",
    "h1b_verdict": ".hypotheses",
    "paired_t_test": ".paired",
    "t_interval": ".paired",
    "min_attainable_p": ".permutation",
    "sign_flip_test": ".permutation",
    "effect_size_interval": ".power",
    "seeds_needed": ".power",
    "fieller_interval": ".ratio",
    "TestResult": ".result",
    "Verdict": ".verdict",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
