"""The protocol's implementation checks: overfitting sanity runs and trivial baselines."""
