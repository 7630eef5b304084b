"""The run directory: atomic writes, a lock against two trainings at once, and the rules for reusing ``--out``.

Every file of a run directory is written to a temporary name in the same directory and renamed over the final
name (:func:`atomic_write`), so a process killed mid-write (``SIGKILL``, a full disk) leaves the previous file or
none, never half of one; a full disk (``ENOSPC``) is a :class:`DiskFull` error naming the file and the free space
(checked before each large write, because HDF5 was seen to crash the process with a segmentation fault on a full
disk instead of raising).

Reusing a directory (:func:`prepare`), with ``config.yaml`` as the run's identity and ``metrics.json`` (written
last) as its "finished" mark:

* empty or missing: a new run;
* the same resolved config, finished: nothing to train (the saved metrics are returned);
* the same resolved config, unfinished: resume from the last backup (``identity_tf.backup``);
* a different config: refused, listing the differing keys, unless ``overwrite`` (which clears the directory);
* a non-empty directory without ``config.yaml``: refused even with ``overwrite`` (it is not a run directory).

:class:`RunLock` holds ``run.lock`` (owner pid, host and start time) with an exclusive ``flock`` for the whole
training: a second training on the same directory is refused with the owner's pid and host; a lock file left by a
process that died is reported and taken over (the kernel drops a dead process's ``flock``).

Example:

>>> import pathlib, tempfile
>>> run = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> with RunLock(run):
...     prepare(run, {"task": "demo", "train": {"epochs": 2}}).status
'new'
>>> prepare(run, {"task": "demo", "train": {"epochs": 2}}).status
'resume'
>>> atomic_write_text(run / "metrics.json", '{"test": {"loss": 0.5}}')
>>> prepare(run, {"task": "demo", "train": {"epochs": 2}}).metrics
{'test': {'loss': 0.5}}
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import pathlib
import shutil
import socket
import time
import warnings
from collections.abc import Callable

import yaml

LOCK_NAME = "run.lock"
MIN_FREE_BYTES = 1 << 20  # what a write needs beyond its own size (file system metadata, the temporary name)


class RunDirError(RuntimeError):
    """A run directory cannot be used as asked (another config, unreadable files, not writable, full disk)."""


class RunDirLocked(RunDirError):
    """Another live process trains into the run directory."""


class DiskFull(RunDirError):
    """The file system of the run directory has no space left."""


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def check_free_space(directory, needed_bytes: int, what: str) -> None:
    """Raises :class:`DiskFull` when ``directory``'s file system has less than ``needed_bytes`` (+1 MiB) free."""
    free = shutil.disk_usage(directory).free
    if free < needed_bytes + MIN_FREE_BYTES:
        raise DiskFull(
            f"No space left to write {what}: it needs about {_mib(needed_bytes + MIN_FREE_BYTES)}, the file system "
            f"of {directory} has {_mib(free)} free. Free some space and run the same command again (training resumes "
            f"from the last backup). Received: free={free} bytes"
        )


def atomic_write(path, write: Callable[[pathlib.Path], None], needed_bytes: int = 0) -> None:
    """Writes ``path`` through ``write(temporary_path)`` and renames the result over ``path``.

    The temporary file is ``.tmp-<pid>-<name>`` in the same directory (so it keeps the suffix that Keras checks:
    ``.weights.h5``, ``.keras``), fsynced before the rename; on any error it is removed and ``path`` is untouched.
    ``needed_bytes`` is checked against the free space first (:func:`check_free_space`).
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        check_free_space(path.parent, needed_bytes, str(path))
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.errno == errno.ENOSPC:
            raise DiskFull(
                f"No space left on the device while writing {path}. Free some space and run the same command again "
                f"(training resumes from the last backup). Received: {error}"
            ) from error
        raise RunDirError(f"Cannot write {path}: {error.strerror or error}. Received: {error}") from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    """:func:`atomic_write` of a text file."""
    atomic_write(path, lambda tmp: tmp.write_text(text), needed_bytes=len(text.encode()))


def atomic_copy(source, path) -> None:
    """:func:`atomic_write` of a copy of ``source``."""
    atomic_write(path, lambda tmp: shutil.copyfile(source, tmp), needed_bytes=os.path.getsize(source))


def read_json(path) -> dict:
    """A JSON file of a run directory; unreadable or malformed is a :class:`RunDirError` naming the file."""
    path = pathlib.Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunDirError(
            f"{path} is unreadable ({error}); delete the run directory or train again with --overwrite. "
            f"Received: {path}"
        ) from None


# ------------------------------------------------------------------------------------------------------- lock
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunLock:
    """Exclusive lock of a run directory for one training (a context manager; creates the directory).

    ``run.lock`` holds the owner's pid, host and start time, and the owner holds an exclusive ``flock`` on it.
    Acquiring fails with :class:`RunDirLocked` while another process holds it. A lock file whose owner no longer
    holds it (its process died: the kernel released the ``flock``) is stale: it is reported with a warning and
    taken over. A lock file written on another host is never taken over (its process cannot be checked from here).
    """

    def __init__(self, run_dir):
        self.run_dir = pathlib.Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def _owner(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _describe(self, owner: dict) -> str:
        return f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')} (since {owner.get('started', '?')})"

    def acquire(self) -> RunLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunDirError(
                f"Cannot create the run directory {self.run_dir}: {error.strerror or error}. Received: --out "
                f"{self.run_dir}"
            ) from error
        host = socket.gethostname()
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise RunDirError(
                    f"Cannot write to the run directory {self.run_dir}: {error.strerror or error}. Choose a writable "
                    f"--out. Received: {error}"
                ) from error
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                owner = self._owner()
                raise RunDirLocked(
                    f"{self.run_dir} is in use by another training: {self._describe(owner)}. Wait for it to finish, "
                    f"or use another --out. Received: lock file {self.path}"
                ) from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:  # released and removed between our open and our flock
                same_file = False
            if not same_file:
                os.close(fd)
                continue
            break
        owner = self._owner()
        if owner.get("host") not in (None, host):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise RunDirLocked(
                f"{self.run_dir} is locked by a training on another host: {self._describe(owner)}. If that process is "
                f"gone, delete {self.path}. Received: this host {host}"
            )
        if owner.get("pid") is not None:
            state = "no longer running" if not _alive(int(owner["pid"])) else "running but not holding the lock"
            warnings.warn(
                f"identity-tf: took over the stale lock of {self.run_dir}: {self._describe(owner)}, {state}.",
                RuntimeWarning,
                stacklevel=2,
            )
        record = {"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------------------------------- reuse
@dataclasses.dataclass
class RunState:
    """What :func:`prepare` found: ``status`` "new", "resume" or "finished" (then ``metrics``: metrics.json)."""

    status: str
    metrics: dict | None = None


def _flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_diff(old: dict, new: dict) -> list[str]:
    """``["train.epochs: 10 -> 20", ...]``: the dotted keys whose values differ."""
    a, b = _flatten(old), _flatten(new)
    missing = object()
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, missing) != b.get(key, missing):
            before = "(absent)" if key not in a else repr(a[key])
            after = "(absent)" if key not in b else repr(b[key])
            lines.append(f"{key}: {before} -> {after}")
    return lines


def clear(run_dir, keep: tuple[str, ...] = (LOCK_NAME,)) -> None:
    """Deletes every entry of ``run_dir`` but ``keep``."""
    for entry in pathlib.Path(run_dir).iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare(run_dir, resolved: dict, overwrite: bool = False, read_only: bool = False, normalize=None) -> RunState:
    """Applies the reuse rules (module docstring) to ``run_dir`` for the resolved config ``resolved``.

    ``normalize(saved) -> dict`` resolves a saved ``config.yaml`` as the current release reads it (a config of an
    older schema, e.g. release 0.1's, names the same run in the new layout); a saved config it cannot read is
    compared as it is.

    Clears the directory (``overwrite``) and writes ``config.yaml`` for a new run, unless ``read_only`` (the
    non-chief workers of a multi-worker run, which reach the chief's decision without writing). Call it while
    holding the :class:`RunLock`.
    """
    run_dir = pathlib.Path(run_dir)
    config_path = run_dir / "config.yaml"
    names = [p.name for p in run_dir.iterdir()] if run_dir.is_dir() else []
    entries = [name for name in names if name != LOCK_NAME and not name.startswith(".tmp-")]
    if entries and not config_path.exists():
        raise RunDirError(
            f"{run_dir} is not empty and holds no config.yaml, so it is not a run directory; nothing was written "
            f"(--overwrite does not clear it). Choose an empty or new --out. Received: {sorted(entries)[:5]}"
        )
    if entries and not overwrite:
        try:
            old = yaml.safe_load(config_path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise RunDirError(
                f"{config_path} is unreadable ({error}); train again with --overwrite to replace the run. "
                f"Received: {config_path}"
            ) from None
        if normalize is not None and isinstance(old, dict) and old != resolved:
            try:
                old = normalize(old)
            except (ValueError, TypeError, KeyError):
                pass
        if old != resolved:
            diff = config_diff(old if isinstance(old, dict) else {}, resolved)
            kind = "a finished" if (run_dir / "metrics.json").exists() else "an unfinished"
            raise RunDirError(
                f"{run_dir} holds {kind} run of a different config. Use another --out, or --overwrite to delete "
                f"that run and train this config. Received (saved -> now): "
                + "; ".join(diff[:12])
                + (f"; ... ({len(diff)} keys)" if len(diff) > 12 else "")
            )
        if (run_dir / "metrics.json").exists():
            return RunState("finished", read_json(run_dir / "metrics.json"))
        return RunState("resume")
    if read_only:
        return RunState("new")
    if entries:
        clear(run_dir)
    atomic_write_text(config_path, yaml.safe_dump(resolved, sort_keys=False))
    return RunState("new")
