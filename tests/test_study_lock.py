"""One study per folder at a time: a second `study run` in a folder another one holds is refused at
once (one line naming the folder and the holder's pid, exit 2, nothing touched), and a holder
killed with SIGKILL leaves the folder free."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lorascope.artifacts import LOCK_FILE, FolderBusy, FolderLock, lock_holder
from lorascope.cli.main import app
from lorascope.errors import ConfigError
from tests.conftest import REPO

# A study whose only stage reads the GLUE files: no model is loaded, no unit trained.
STUDY = {"name": "locked", "model": "tiny-llama", "tasks": ["rte"], "methods": ["lora"], "seeds": [1],
         "stages": ["baselines"]}


def _study_file(tmp_path: Path, out: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "out": str(out)}))
    return path


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the holder exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# The lock itself.


def test_a_held_folder_is_refused_naming_it_and_the_pid(tmp_path):
    with FolderLock.acquire(tmp_path, user="another study run"):
        assert lock_holder(tmp_path) == f"pid {os.getpid()} on {os.uname().nodename}"
        # flock belongs to an open file: a second open, even in this process, is turned away.
        with pytest.raises(FolderBusy, match=rf"^{re.escape(str(tmp_path))}: another study run is using this "
                                             rf"folder \(pid {os.getpid()} on .*\)"):
            FolderLock.acquire(tmp_path, user="another study run", wait_s=0)
    assert not (tmp_path / LOCK_FILE).exists(), "a released lock leaves no file behind"
    assert lock_holder(tmp_path) is None
    with FolderLock.acquire(tmp_path, wait_s=0):  # free again
        pass


def test_a_lock_file_removed_while_waited_on_is_not_taken(tmp_path):
    """The holder removes the file as it releases: a waiter that opened the old file takes the new one."""
    first = FolderLock.acquire(tmp_path)
    stale = os.open(tmp_path / LOCK_FILE, os.O_RDWR)  # a waiter's descriptor of the file being removed
    first.release()
    second = FolderLock.acquire(tmp_path, wait_s=0)
    try:
        import fcntl

        # The old file is free to lock (it guards nothing now); the lock that counts is the new file's.
        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert os.fstat(stale).st_ino != os.stat(tmp_path / LOCK_FILE).st_ino
        with pytest.raises(FolderBusy):
            FolderLock.acquire(tmp_path, wait_s=0)
    finally:
        os.close(stale)
        second.release()


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lorascope.artifacts import FolderLock
    lock = FolderLock.acquire(Path(sys.argv[1]))
    print("locked", flush=True)
    time.sleep(600)
""")


def test_a_sigkilled_holder_leaves_the_folder_free(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_holder(tmp_path) == f"pid {holder.pid} on {os.uname().nodename}"
        with pytest.raises(FolderBusy, match=f"pid {holder.pid}"):
            FolderLock.acquire(tmp_path, wait_s=0)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel released the lock with the process; its file stays, unlocked, and is taken.
    assert (tmp_path / LOCK_FILE).exists()
    assert lock_holder(tmp_path) is None
    with FolderLock.acquire(tmp_path, wait_s=0) as lock:
        assert lock_holder(tmp_path) == f"pid {os.getpid()} on {os.uname().nodename}"
    assert not lock.path.exists()


# --------------------------------------------------------------------------------------------
# `study run` and the lock.


def test_study_run_in_a_held_folder_is_one_line_exit_2_and_touches_nothing(tmp_path):
    out = tmp_path / "study-out"
    out.mkdir()
    (out / "baselines.json").write_text("{}")  # a result of the holder's, not to be cleaned up
    study = _study_file(tmp_path, out)
    with FolderLock.acquire(out, user="another study run"):
        before = _tree(out)
        result = CliRunner().invoke(app, ["study", "run", str(study)], catch_exceptions=True)
        assert _tree(out) == before  # no config.yaml, no timings, nothing removed
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    assert lines[0].startswith(f"error: {out}: another study run is using this folder (pid {os.getpid()} on ")


# A real `lorascope study run` whose baselines stage waits for a file: it holds the folder until told to go on.
GATED_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import lorascope.checks.baselines as baselines

    real, gate = baselines.run_baselines, Path(sys.argv[1])

    def gated(*args, **kwargs):
        while not gate.exists():
            time.sleep(0.05)
        return real(*args, **kwargs)

    baselines.run_baselines = gated
    sys.argv = ["lorascope", "study", "run", sys.argv[2]]
    from lorascope.cli.main import app
    app()
""")


@pytest.mark.slow
def test_two_real_study_runs_on_one_folder(glue_dir, tmp_path):
    out = tmp_path / "study-out"
    study = _study_file(tmp_path, out)
    gate = tmp_path / "go-on"
    first = subprocess.Popen([sys.executable, "-c", GATED_RUN, str(gate), str(study)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The first run holds the folder once its journal says the stage started.
        _wait_for(lambda: (out / "timings.json").is_file() and lock_holder(out) is not None, "the lock", first)
        second = subprocess.run([sys.executable, "-m", "lorascope.cli.main", "study", "run", str(study)], cwd=REPO,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert "Traceback" not in second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith(f"error: {out}: another study run is using this folder (pid {first.pid} on ")
        gate.touch()
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr
    assert "study complete" in stdout or "stages done" in stdout
    assert (out / "baselines" / "baselines.json").is_file()
    assert not (out / LOCK_FILE).exists() and lock_holder(out) is None


def test_a_file_system_without_locks_runs_unguarded_with_a_warning(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl
    import logging

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    logger = logging.getLogger("lorascope")
    monkeypatch.setattr(logger, "propagate", True)
    with caplog.at_level(logging.WARNING, logger="lorascope"):
        with FolderLock.acquire(tmp_path) as lock:
            assert lock.path.read_text().startswith(f"pid {os.getpid()} ")
    assert "does not support locks" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who may write anywhere (root)")
        with pytest.raises(ConfigError, match=r"ro: cannot write in this folder \(Permission denied\)"):
            FolderLock.acquire(folder)
    finally:
        folder.chmod(0o700)
