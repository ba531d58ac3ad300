"""The reference study's numbers (TinyLlama-1.1B, L4 GPU, 3 seeds; docs/protocol.md §7), shown beside
ours where the same quantity exists. Reference values, not targets: other model, other hardware."""

REFERENCE = {
    "sst2": {"drift_lora": 0.641, "drift_full": 0.899, "reduction": 28.6, "metric_lora": 95.0, "metric_full": 86.6,
             "cosine_lora": 0.97, "cosine_full": 0.77},
    "mrpc": {"drift_lora": 0.765, "drift_full": 0.777, "reduction": 1.6, "metric_lora": 88.1, "metric_full": 86.5,
             "cosine_lora": 0.98, "cosine_full": 0.96},
    "rte": {"drift_lora": 0.601, "drift_full": 0.602, "reduction": 0.1, "metric_lora": 78.7, "metric_full": 56.1,
            "cosine_lora": 0.996, "cosine_full": 0.995},
}
REFERENCE_SERVING = {"separate_vs_merged_batch1": 1.375, "merged_ms": 25.5, "separate_ms": 35.1}
