"""Small utilities shared by tests: logits of a model on a tokenised dataset, a folder of tiny trained runs."""

from __future__ import annotations

from pathlib import Path

import torch

from lorascope.data.tokenize import CountingCollator


@torch.no_grad()
def logits_of(model, tokenizer, ds, batch_size: int = 8, pad_to_max_length: bool = False, max_length: int = 64) -> torch.Tensor:
    """Logits ``[n, n_labels]`` of ``model`` on tokenised ``ds`` (float64 for comparisons)."""
    model.eval()
    collate = CountingCollator(tokenizer, pad_to_max_length, max_length)
    rows = [ds[i] for i in range(len(ds))]
    out = []
    for start in range(0, len(rows), batch_size):
        batch = collate(rows[start : start + batch_size])
        batch.pop("labels", None)
        out.append(model(**batch).logits.double())
    return torch.cat(out)


def train_tiny_runs(root: Path, task: str, max_length: int) -> Path:
    """LoRA and full fine-tuning of ``tiny-llama`` on ``task``, seeds 1 and 2, into ``root/<task>-<method>-s<seed>``."""
    import os

    from lorascope.train import TrainConfig, run_train
    from tests.conftest import GLUE_DIR

    os.environ["GLUE_DIR"] = str(GLUE_DIR)
    for method in ("lora", "full"):
        for seed in (1, 2):
            cfg = TrainConfig(task=task, method=method, model="tiny-llama", seed=seed, train_limit=24, eval_limit=16,
                              epochs=1, batch_size=8, max_length=max_length, lr=5e-3 if method == "lora" else 1e-3)
            assert run_train(cfg, root / f"{task}-{method}-s{seed}", progress=False).ok
    return root
