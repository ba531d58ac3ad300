"""Small utilities shared by tests: logits of a model on a tokenised dataset."""

from __future__ import annotations

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
