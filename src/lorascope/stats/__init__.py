"""Statistics for honest comparisons across a few seeds: paired tests, intervals, corrections.

Every test returns a :class:`TestResult` recording its name, n and exact p-value (and, for the
permutation test, the smallest p attainable with that n).
"""

from lorascope.stats.bootstrap import ConfidenceInterval, bootstrap_ci
from lorascope.stats.corrections import Correction, bonferroni, bonferroni_alpha, correct, holm
from lorascope.stats.effect import cohens_d_paired
from lorascope.stats.hierarchical import hierarchical_interval
from lorascope.stats.hypotheses import h1a_verdict, h1b_verdict
from lorascope.stats.paired import paired_t_test, t_interval
from lorascope.stats.permutation import min_attainable_p, sign_flip_test
from lorascope.stats.power import seeds_needed
from lorascope.stats.ratio import fieller_interval
from lorascope.stats.result import TestResult
from lorascope.stats.verdict import Verdict

__all__ = [
    "ConfidenceInterval",
    "Correction",
    "TestResult",
    "Verdict",
    "bonferroni",
    "bonferroni_alpha",
    "bootstrap_ci",
    "cohens_d_paired",
    "correct",
    "fieller_interval",
    "h1a_verdict",
    "hierarchical_interval",
    "h1b_verdict",
    "holm",
    "min_attainable_p",
    "paired_t_test",
    "seeds_needed",
    "sign_flip_test",
    "t_interval",
]
