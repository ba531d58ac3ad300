"""The weight lens: how far fine-tuning moved a weight matrix, and in which directions.

Pure functions over weight arrays (numpy or torch, converted to float64): no model code, no I/O.
For one matrix, ``w0`` is the pre-trained weight ``[out, in]`` and ``w1`` the fine-tuned one (for
LoRA, ``w0 + ΔW`` with ``ΔW = scale · B · A``, see :func:`lora_delta`).
"""

from lorascope._lazy import lazy_exports

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    "DEFAULT_EPSILON": ".defaults",
    "DEFAULT_TOP_K": ".defaults",
    "count_intruders": ".intruders",
    "intruder_similarity": ".intruders",
    "left_singular_vectors": ".intruders",
    "matched_intruders": ".intruders",
    "rescaled_update": ".intruders",
    "MatrixUpdate": ".update",
    "dora_delta": ".update",
    "entropy_rank": ".update",
    "lora_delta": ".update",
    "matrix_update": ".update",
    "relative_update": ".update",
    "singular_values": ".update",
    "stable_rank": ".update",
    "stable_rank_of": ".update",
    "entropy_rank_of": ".update",
    "describe_matrices": ".scope",
    "matrix_type": ".scope",
    "short_types": ".scope",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
