"""Small utilities shared by tests: logits of a model on a tokenised dataset, a folder of tiny trained runs."""

from __future__ import annotations

import contextlib
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


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app, timeout_s: float = 30.0):
    """``app`` served by uvicorn (``make_server``) on a free loopback port in a thread; yields its URL
    once the server has started, and stops it on exit."""
    import threading
    import time

    from lorascope.serve.http import make_server

    port = free_port()
    server = make_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + timeout_s
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started, "the server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
