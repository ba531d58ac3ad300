"""Training under torchrun with two CPU processes (gloo), the way users scale out."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

# Trains, kills or serves for real: the slow tier (make test runs it; make test-fast skips it).
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes(glue_dir, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun is installed with torch"
    out = tmp_path / "ddp"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "lorascope.cli.main", "train", "--task", "rte", "--method", "lora", "--model", "tiny-llama",
           "--out", str(out), "train_limit=32", "eval_limit=16", "epochs=1", "max_length=32", "batch_size=4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    # 32 examples / (4 per device × 2 processes) = 4 optimiser steps in one epoch.
    assert metrics["steps"] == 4
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
