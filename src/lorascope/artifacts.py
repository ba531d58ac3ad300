"""Atomic, resumable artifact folders: the one path by which every stage commits its result.

A unit of work writes into ``<out>.partial`` and renames it to ``<out>`` when complete
(``os.replace`` is atomic on one file system), so ``<out>`` existing means the unit finished.
Replacing a finished ``<out>`` moves it aside to ``<out>.old`` first and deletes it only once the
new folder is in place; ``recover_finish`` completes a replacement cut off between the two renames.
Every folder stores its resolved config (``config.yaml``) and where it came from
(``provenance.json``). One rule for a folder that exists already: made with other settings, it is
an error that names the differing keys (unless the caller overwrites); made with the same
settings, the new result replaces it once complete (a caller that treats it as done does not
commit again). :func:`commit` (and :class:`Commit`, for callers that finish in two steps) is that
path; :func:`commit_failure` records a unit that crashed through it too. A folder that one process
at a time may write (a study) is held with :class:`FolderLock`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from lorascope.config import diff_configs, dump_yaml, parse_yaml
from lorascope.errors import ConfigError

CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
# What an analysis was computed from (see Commit's ``inputs``): a rerun on the same inputs is done.
INPUTS_FILE = "inputs.json"
LOCK_FILE = ".lock"


# Suffixes of folders that are not (yet, or no longer) a unit's result: work in progress, a
# replaced result waiting to be deleted, a failure record being written.
NOT_RESULT_SUFFIXES = (".partial", ".old", ".failed")


def partial_path(out: Path) -> Path:
    """Where the unit for ``out`` is written until it is complete: beside it, so ``out`` needs a name of its own.

    Raises:
        ConfigError: ``out`` ends in no folder name (``.``, ``..``, ``/``).
    """
    if out.name in ("", ".", ".."):
        raise ConfigError(f"{str(out)!r}: a result folder needs a path that ends in a folder name "
                          "(its .partial is made beside it)")
    return out.with_name(out.name + ".partial")


def old_path(out: Path) -> Path:
    """Where a finished ``out`` waits, while ``finish`` replaces it, until the new one is in place."""
    return out.with_name(out.name + ".old")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object written by :func:`write_json`.

    Raises:
        ValueError: the file is not a JSON object (damaged, or not written by lorascope).
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield ``<path>.tmp`` to write; on success rename it onto ``path``, so a reader (or a run
    killed mid-write and resumed) never sees half a file. On an error the temporary file is removed."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def stored_config(folder: Path) -> dict[str, Any] | None:
    """``folder``'s ``config.yaml``, None without one.

    Raises:
        yaml.YAMLError: the file is not valid YAML (damaged, or not written by lorascope).
    """
    p = folder / CONFIG_FILE
    if not p.is_file():
        return None
    return parse_yaml(p.read_text(encoding="utf-8")) or {}


def dump_yaml_atomic(data: dict[str, Any], path: Path) -> None:
    """Write YAML via a temporary file (see :func:`atomic_write`): a kill mid-write leaves the old file."""
    with atomic_write(path) as tmp:
        dump_yaml(data, tmp)


def check_same_config(folder: Path, resolved: dict[str, Any]) -> None:
    """Raise ``ConfigError`` naming the keys that differ between ``folder``'s config and ``resolved``."""
    stored = stored_config(folder)
    if stored is None:
        raise ConfigError(f"{folder}: exists but has no {CONFIG_FILE}; remove it or choose another output folder")
    diffs = diff_configs(stored, resolved)
    if diffs:
        raise ConfigError(f"{folder}: was made with a different config ({'; '.join(diffs[:4])}); use another output folder or --overwrite")


def start_partial(out: Path, resolved: dict[str, Any]) -> Path:
    """The ``.partial`` folder to write into; kept (to resume) when its config matches, else fresh."""
    recover_finish(out)  # a partial that was being renamed into place is finished, not reused
    partial = partial_path(out)
    if partial.exists():
        try:
            stored = stored_config(partial)
        except yaml.YAMLError:
            stored = None  # unreadable: start afresh rather than fail on every rerun
        if stored is None or diff_configs(stored, resolved):
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    # Via a temporary file: a kill mid-write must not leave a truncated config that a rerun misreads.
    dump_yaml_atomic(resolved, partial / CONFIG_FILE)
    return partial


def finish(partial: Path, out: Path) -> None:
    """Rename the completed ``partial`` into place, replacing a finished ``out`` only then.

    Two renames, not delete-then-rename: at every instant either the old or the new folder is
    complete on disk (as ``out``, or as ``<out>.old`` beside the complete ``partial``).
    """
    old = old_path(out)
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)  # left over from a replacement cut off after its renames
        os.replace(out, old)
    os.replace(partial, out)
    shutil.rmtree(old, ignore_errors=True)


def recover_finish(out: Path) -> None:
    """Complete a ``finish`` that was cut off; does nothing when none was.

    With ``<out>.old`` present and ``out`` missing, the kill came between the two renames, when
    ``partial`` was already complete: it is renamed into place. A leftover ``<out>.old`` beside
    ``out`` is deleted.
    """
    old = old_path(out)
    if not old.exists():
        return
    if not out.exists():
        partial = partial_path(out)
        # Only finish() makes <out>.old, and only while holding a complete partial; without one
        # (someone removed it) the old folder is the only finished result: put it back.
        os.replace(partial if partial.exists() else old, out)
    shutil.rmtree(old, ignore_errors=True)


def check_output_path(path: Path, *, folder: bool | None = True, what: str = "") -> None:
    """An output path something can be written to, checked before any work. Without it a command works for
    minutes (loads a model, trains) and then stops on an ``OSError`` traceback where it first writes, or a
    result renamed into place moves the user's file aside.

    Args:
        path: where the output goes.
        folder: True for an output folder (a file there is an error), False for an output file (a folder
            there is an error), None for either (the command decides).
        what: the option or key that gave the path (``--out``, ``out:``), to name it in the error.

    Raises:
        ConfigError: naming the path, and what is in the way: a file or folder of the wrong kind at
            ``path``, a file among its parents, or a parent this process may not create anything in.
    """
    shown = f"{what} {path}" if what else str(path)
    if folder is not None and path.exists() and path.is_dir() != folder:
        found, wanted = ("a file", "folder") if folder else ("a folder", "file")
        raise ConfigError(f"{shown}: exists and is {found}, not an output {wanted}; choose another output path")
    if path.exists():
        return
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{shown}: {parent} is a file, not a folder; choose another output path")
    try:  # a trial folder, removed at once: os.access does not see read-only mounts and pseudo file systems
        os.rmdir(tempfile.mkdtemp(prefix=".lorascope-check-", dir=parent))
    except OSError as err:
        raise ConfigError(f"{shown}: cannot create anything in {parent} ({err.strerror}); "
                          "choose an output path in a writable folder") from None


def check_target(out: Path, settings: Mapping[str, Any], *, overwrite: bool = False) -> None:
    """The rule for an ``out`` that exists: made with other settings, a ``ConfigError`` naming the
    differing keys, unless ``overwrite``. A cut-off replacement of ``out`` is completed first.

    A result folder without a ``config.yaml`` was written before folders stored their settings (a
    stage's JSON record is in it): it is replaced like one made with the same settings.
    """
    check_output_path(out)
    recover_finish(out)
    if overwrite or not out.is_dir() or not any(out.iterdir()):
        return  # nothing there yet (an empty folder made ahead, for instance)
    if out.exists() and not (out / CONFIG_FILE).exists() and any(out.glob("*.json")):
        return
    check_same_config(out, dict(settings))


class Commit:
    """One result folder on its way in: :meth:`begin` (checks, then the ``.partial`` to write into),
    :meth:`complete` (provenance, then the rename into place). :func:`commit` wraps the two.

    Args:
        out: The result folder.
        settings: Its resolved config, stored as ``config.yaml`` and compared with an existing one.
        overwrite: Replace ``out`` whatever settings it was made with.
        keep: Names of sub-folders of an existing ``out`` whose files stay valid under any result
            (content-keyed caches): hard-linked into the new ``.partial`` so a redone unit reuses them.
        seed: The seed recorded in ``provenance.json``.
        inputs: What the result is computed from besides its settings (an analysis: a fingerprint of
            the runs it reads), stored as ``inputs.json``. With the same settings, other inputs
            replace the result (the runs changed: the analysis is redone), and the same inputs make
            the unit :meth:`done`.
    """

    def __init__(self, out: Path, settings: Mapping[str, Any], *, overwrite: bool = False,
                 keep: Sequence[str] = (), seed: int | None = None, inputs: Mapping[str, Any] | None = None) -> None:
        self.out, self.settings, self.overwrite, self.keep, self.seed = Path(out), dict(settings), overwrite, keep, seed
        self.inputs = None if inputs is None else dict(inputs)
        self.partial = partial_path(self.out)

    def check(self) -> None:
        """Apply the rule for an existing ``out`` (:func:`check_target`) now, before any work is done."""
        check_target(self.out, self.settings, overwrite=self.overwrite)

    def done(self) -> bool:
        """Whether ``out`` already holds this result: made with these settings from these ``inputs``
        (never with ``overwrite``). Other settings raise as :meth:`check` does.

        Raises:
            ConfigError: ``out`` was made with other settings.
        """
        self.check()
        return not self.overwrite and self.inputs is not None and made_from(self.out, self.inputs)

    def write(self, records: Mapping[str, Any]) -> None:
        """Commit a result that is JSON records only (file name -> data), computed in memory."""
        partial = self.begin()
        for name, data in records.items():
            write_json(partial / name, data)
        self.complete()

    def begin(self) -> Path:
        """Check ``out`` (see :func:`check_target`) and return the ``.partial`` folder to write into:
        the one an interrupted attempt with the same settings left (to resume), else a fresh one."""
        self.check()
        self.partial = start_partial(self.out, self.settings)
        for name in self.keep:
            _link_tree(self.out / name, self.partial / name)
        return self.partial

    def complete(self) -> None:
        """Write ``provenance.json`` (unless the unit wrote its own) and rename the partial into place.

        Temporary files an interrupted attempt left half-written (``*.tmp``) are deleted first: they
        are never part of a result."""
        for leftover in self.partial.rglob("*.tmp"):
            leftover.unlink(missing_ok=True)
        if self.inputs is not None:
            write_json(self.partial / INPUTS_FILE, self.inputs)
        if not (self.partial / PROVENANCE_FILE).exists():
            from lorascope.provenance import provenance

            write_json(self.partial / PROVENANCE_FILE, provenance(self.seed))
        finish(self.partial, self.out)

    def discard(self) -> None:
        """Remove the partial (bad input: nothing is left behind)."""
        shutil.rmtree(self.partial, ignore_errors=True)


@contextlib.contextmanager
def commit(out: Path, settings: Mapping[str, Any], *, overwrite: bool = False, keep: Sequence[str] = (),
           seed: int | None = None, discard_on: tuple[type[BaseException], ...] = ()) -> Iterator[Path]:
    """Yield the ``.partial`` folder of ``out`` to write a result into; commit it when the block ends.

    On an exception the partial stays, for a rerun with the same settings to resume, except on the
    ``discard_on`` exceptions (bad input), which remove it. See :class:`Commit` for the arguments.
    """
    unit = Commit(out, settings, overwrite=overwrite, keep=keep, seed=seed)
    partial = unit.begin()
    try:
        yield partial
    except discard_on:
        unit.discard()
        raise
    unit.complete()


def made_from(out: Path, inputs: Mapping[str, Any]) -> bool:
    """Whether the result in ``out`` stores exactly these ``inputs`` (its ``inputs.json``); an absent or
    unreadable file is False: redo rather than trust it."""
    try:
        return read_json(out / INPUTS_FILE) == dict(inputs)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def new_folder(out: Path) -> Iterator[Path]:
    """Yield the ``.partial`` folder of ``out``, a folder that must not exist yet, and rename it into
    place when the block ends; on an exception it is removed. For a copy (an export of records), which
    has no settings of its own to store and nothing to resume: it is whole or absent.

    Raises:
        ConfigError: ``out`` exists.
    """
    if out.exists():
        raise ConfigError(f"{out}: already exists; choose a new folder")
    check_output_path(out)
    partial = partial_path(out)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finish(partial, out)


def amend(out: Path, records: Mapping[str, Any]) -> None:
    """Commit a finished ``out`` again with some of its JSON records replaced (file name -> data):
    a later step revises a result (the study-wide correction of each task's verdicts). Every other
    file is hard-linked into the new folder, whose settings are the stored ones.

    A folder written before folders stored their settings (no ``config.yaml``) has each record
    replaced in place, atomically.
    """
    settings = stored_config(out)
    if settings is None:
        for name, data in records.items():
            write_json(out / name, data)
        return
    unit = Commit(out, settings)
    partial = unit.begin()
    for path in out.iterdir():
        if path.name not in records and path.name != CONFIG_FILE:
            if path.is_dir():
                _link_tree(path, partial / path.name)
            elif not (partial / path.name).exists():
                os.link(path, partial / path.name)
    for name, data in records.items():
        write_json(partial / name, data)
    unit.complete()


def commit_failure(out: Path, settings: Mapping[str, Any], files: Mapping[str, Mapping[str, Any]]) -> bool:
    """Commit a unit that crashed as a finished folder holding ``files`` (name -> JSON record).

    Written as ``<out>.failed`` and renamed onto ``out``. An interrupted attempt's ``<out>.partial``
    stays where it is, so the retry resumes from it instead of starting over.

    Returns:
        Whether the record was written (False when the disk refused it: often the very cause).
    """
    record = out.with_name(out.name + ".failed")
    try:
        shutil.rmtree(record, ignore_errors=True)
        record.mkdir(parents=True)
        dump_yaml_atomic(dict(settings), record / CONFIG_FILE)
        for name, data in files.items():
            write_json(record / name, dict(data))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(record, out)
    except OSError:
        shutil.rmtree(record, ignore_errors=True)
        return False
    return True


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (copy where links are refused) every file under ``src`` into ``dst`` that is not there."""
    if not src.is_dir():
        return
    for path in src.rglob("*"):
        if not path.is_file() or path.name.endswith(".tmp"):
            continue
        target = dst / path.relative_to(src)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


class FolderBusy(ConfigError):
    """Another process holds the folder's :class:`FolderLock`; the message names the folder and the holder."""


class FolderLock:
    """One process at a time in a folder: ``fcntl.flock`` on ``<folder>/.lock``, which holds the holder's pid.

    The kernel releases an flock when its holder exits, however it exits (SIGKILL, out of memory,
    a lost machine's NFS lease), so a killed process never leaves the folder locked: its lock file
    stays behind, unlocked, and the next process takes it. The descriptor is not inherited by
    programs the holder starts (Python opens files non-inheritable), so a Ray daemon started by a
    study does not keep the study locked after the study has gone.

    Use as a context manager around :meth:`acquire`; :meth:`release` removes the lock file.
    """

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: Path, user: str = "another process", wait_s: float = 1.0) -> FolderLock:
        """Take the lock of ``folder`` (which must exist), waiting up to ``wait_s`` seconds.

        The short wait lets a concurrent :func:`lock_holder` (which takes the lock for an instant
        to test it) pass instead of turning away a process that comes at that instant.

        Args:
            folder: The folder.
            user: Who else could hold it, for the message (``another study run``).
            wait_s: How long to retry a lock that is held.

        Raises:
            FolderBusy: the lock is held, naming the folder and the holder's pid and host.
        """
        import errno
        import fcntl
        import logging

        path = folder / LOCK_FILE
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise ConfigError(f"{folder}: cannot write in this folder ({err.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise FolderBusy(f"{folder}: {user} is using this folder ({holder}); one process at a time: "
                                 "wait for it to finish, or stop it") from None
            except OSError as err:
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
                # Refusing every run on such a file system would be worse than running unguarded.
                logging.getLogger("lorascope").warning(
                    f"{folder}: this file system does not support locks; make sure no other run uses the folder")
            # The previous holder removes the file as it releases: a lock taken on the removed file
            # guards nothing (a newcomer creates and locks a new one), so take the current file's.
            if _same_file(fd, path):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        return cls(folder, fd)

    def release(self) -> None:
        """Remove the lock file and release the lock (doing nothing when released already)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _same_file(fd, self.path):
                self.path.unlink()
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_holder(folder: Path) -> str | None:
    """Who holds ``folder``'s :class:`FolderLock` (``pid 1234 on host``), None when nobody does.

    Reads without writing: a lock file left by a killed process is found unlocked and left as is.
    """
    import fcntl

    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(fd)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    # Empty between the holder's lock and its write of the pid: a moment, but it happens.
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return text or "pid not yet written"


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
