"""The shared HPO study on a real PostgreSQL server: two ``lorascope hpo`` workers, one killed mid-trial."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.postgres import INSTALL_HINT, postgres_server, server_binaries

# Starts a database server and trains for real: the slow tier.
pytestmark = pytest.mark.slow

N_TRIALS = 5


@pytest.fixture(scope="module")
def postgres_url():
    if server_binaries() is None:
        pytest.skip(f"no PostgreSQL server installed: {INSTALL_HINT}")
    # Under /tmp, not pytest's tmp_path: the server's own user must be able to reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="lorascope-pg-"))
    folder.chmod(0o755)
    try:
        with postgres_server(folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _worker(url: str, out: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lorascope.cli.main", "hpo", "--task", "mrpc", "--method", "lora", "--model", "tiny-llama",
           "--n-trials", str(N_TRIALS), "--out", str(out), "--storage", url, "heartbeat_s=2", "train_limit=16",
           "eval_limit=8", "max_length=32", "space.epochs=1", "space.batch_size=[8,16]"]
    # Output into a file, not a pipe: a worker must never block on a pipe nobody reads yet.
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def test_two_workers_share_a_postgres_study_and_a_killed_trial_is_rerun(glue_dir, postgres_url, tmp_path):
    import optuna
    from optuna.trial import TrialState

    logs = {w: tmp_path / f"{w}.log" for w in "ab"}
    a, b = _worker(postgres_url, tmp_path / "a", logs["a"]), _worker(postgres_url, tmp_path / "b", logs["b"])

    def output() -> str:
        return "\n".join(f"--- worker {w}:\n{p.read_text()[-3000:]}" for w, p in logs.items() if p.is_file())

    # Kill worker A (SIGKILL: no clean-up of any kind) while one of its trials is training.
    deadline = time.monotonic() + 600
    while not list((tmp_path / "a" / "trials").glob("trial-*.partial")):
        assert a.poll() is None, f"worker A ended before it started a trial:\n{output()}"
        assert time.monotonic() < deadline, f"worker A started no trial in 10 minutes:\n{output()}"
        time.sleep(0.05)
    os.kill(a.pid, signal.SIGKILL)
    a.wait()
    killed = int(next((tmp_path / "a" / "trials").glob("trial-*.partial")).name.split("-")[1].split(".")[0])

    assert b.wait(timeout=900) == 0, output()
    study = optuna.load_study(study_name="hpo-mrpc-lora-tiny-llama", storage=postgres_url)
    states = {t.number: t.state for t in study.trials}
    # Exactly the requested number of complete trials; A's killed trial was failed (stale heartbeat)
    # and replaced, not counted and not left RUNNING.
    assert sum(s == TrialState.COMPLETE for s in states.values()) == N_TRIALS, (states, output())
    assert states[killed] == TrialState.FAIL, (states, output())
    assert TrialState.RUNNING not in states.values()
    assert all(t.value is not None for t in study.trials if t.state == TrialState.COMPLETE)
    # B's summary lists every complete trial of the shared study, A's finished ones included.
    import json

    summary = json.loads((tmp_path / "b" / "hpo.json").read_text())
    assert sum(t["state"] == "COMPLETE" for t in summary["trials"]) == N_TRIALS
