"""The one protocol of every dataset module: build once with a manifest, rebuild when it differs, load checked.

Every data set (Globe TSP, Warcraft, BeerAdvocate, MNIST) is a folder under the data directory holding its data
files and a **manifest**: a JSON file (``provenance.json`` or ``build.json``; the name is the data set's, kept from
earlier releases so that folders built by them are still recognised) that records

* the **parameters** the files depend on (sizes, seed, format or generator version, pinned sources): a folder
  whose manifest records other parameters is rebuilt;
* a **description** that is recorded but not compared (licences, the TSP method, file formats);
* the size and sha256 of every file (``"files"``, added by :func:`identity_tf.datasets.cache.write_record`),
  checked on every build and load: a missing or changed file is a
  :class:`~identity_tf.datasets.cache.CorruptDataError` naming it, with the recorded and the received digest.

:func:`ensure_built` is the single implementation of "build once, atomically; rebuild when the manifest
differs": the builder writes into a temporary folder that replaces the data set folder only when the builder
returned and the manifest is written (:func:`identity_tf.datasets.cache.atomic_dir`), so an interrupted build
(an exception, Ctrl-C, SIGTERM) leaves the previous folder, or none, and the next call builds again.
:func:`check_folder` is the check of every load, :func:`require_foreign_files` the check of
a folder the user placed (e.g. a published data set, never overwritten), and :func:`batches` the common tail of
every ``make_dataset`` (shuffle, batch, map, prefetch).

Example:
>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "demo"
>>> manifest = Manifest("build.json", params={"seed": 0}, info={"licence": "CC0"})
>>> calls = []
>>> def builder(tmp):
...     calls.append(tmp.name)
...     _ = (tmp / "a.txt").write_text("data")
>>> ensure_built(folder, manifest, builder, what="demo", progress=False) == folder
True
>>> _ = ensure_built(folder, manifest, builder, what="demo", progress=False)  # manifest matches: not rebuilt
>>> len(calls), sorted(p.name for p in folder.iterdir())
(1, ['.verified.json', 'a.txt', 'build.json'])
>>> _ = ensure_built(folder, Manifest("build.json", {"seed": 1}), builder, what="demo", progress=False)
>>> len(calls)
2
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Callable

from identity_tf.datasets import cache
from identity_tf.datasets.cache import DataError

#: Keys of a manifest that hold the file record, not parameters (``files_sha256``: Warcraft before the record).
FILE_KEYS = ("files", "files_sha256")


def _as_json(value):
    """``value`` as it reads back from JSON (tuples become lists, integer keys strings)."""
    return json.loads(json.dumps(value))


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a data set folder holds: its manifest file name, the parameters compared and a description.

    Attributes:
        name: File name of the manifest in the folder (``provenance.json``, ``build.json``).
        params: The parameters the files depend on; a recorded manifest matches when it records each of them
            with the same (JSON) value. Other recorded keys are not compared, so a manifest written by an earlier
            release with the same parameters is accepted as it is.
        info: Recorded too, never compared (licences, methods, formats).

    Example:
    >>> manifest = Manifest("build.json", params={"size": (2, 3)}, info={"method": "dp"})
    >>> manifest.matches({"size": [2, 3], "method": "milp", "files": {}}), manifest.matches({"size": [3, 2]})
    (True, False)
    >>> manifest.record()
    {'size': (2, 3), 'method': 'dp'}
    """

    name: str
    params: dict
    info: dict = dataclasses.field(default_factory=dict)

    def matches(self, record: dict) -> bool:
        """Whether a recorded manifest describes a build with these parameters."""
        wanted = _as_json(self.params)
        return all(key in record and record[key] == value for key, value in wanted.items())

    def record(self) -> dict:
        """The manifest to write (without the file record, which :func:`cache.write_record` adds)."""
        return {**self.params, **self.info}


def record_in_place(folder: str | os.PathLike, manifest: Manifest) -> None:
    """Records the digests of a checked folder built before they were recorded (or converted elsewhere).

    The manifest already there is kept (it describes the build, e.g. the method used) and completed from
    ``manifest``; a read-only folder is left as it is (it is checked again on the next use).

    Example:
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.txt").write_text("data")
    >>> record_in_place(folder, Manifest("build.json", {"seed": 0}))
    >>> sorted(cache.read_record(folder, "build.json"))
    ['files', 'seed']
    """
    existing = cache.read_record(folder, manifest.name) or {}
    record = {**manifest.record(), **{k: v for k, v in existing.items() if k not in FILE_KEYS}}
    try:
        cache.write_record(folder, manifest.name, record)
    except OSError:
        pass


def ensure_built(
    folder: str | os.PathLike,
    manifest: Manifest,
    builder: Callable[[pathlib.Path], None],
    *,
    what: str,
    progress: bool = True,
    force: bool = False,
    use_foreign: Callable[[pathlib.Path], pathlib.Path] | None = None,
    adopt: Callable[[pathlib.Path], bool] | None = None,
    accept: Callable[[pathlib.Path], bool] | None = None,
) -> pathlib.Path:
    """Builds ``folder`` once, atomically, with ``manifest``; rebuilds it when its manifest differs.

    Where the folder stands (:func:`identity_tf.datasets.cache.build_state`) decides:

    * built here with matching parameters and intact files (and ``accept(folder)``, if given): returned as it is;
    * files without a manifest (``"foreign"``, e.g. a published data set the user placed): ``use_foreign(folder)``
      when given (it checks the files and returns the folder; the folder is never overwritten);
    * a ``"foreign"`` folder without ``use_foreign``, or one built before digests were recorded
      (``"unverified"``): kept when ``adopt(folder)`` says its contents are right, and its digests are recorded
      (:func:`record_in_place`);
    * anything else (missing, other parameters, a corrupt file, ``force``): ``builder(tmp)`` writes the data files
      into a temporary folder, the manifest with the files' sizes and sha256 digests is written there, and the
      temporary folder replaces ``folder``. If the builder raises, the temporary folder is removed and ``folder``
      is left as it was (or absent), so the next call builds again.

    Args:
        folder: The data set folder.
        manifest: What it must hold.
        builder: ``tmp -> None``: writes every data file into ``tmp``.
        what: What the folder is, for messages (e.g. ``"Globe TSP(5)"``).
        progress: Report a corrupt folder before rebuilding it.
        force: Rebuild whatever the folder holds.
        use_foreign: ``folder -> folder`` for a folder of files this module did not write.
        adopt: ``folder -> bool``: whether an unrecorded folder holds the right contents.
        accept: ``folder -> bool``: an extra check of a current folder (False rebuilds it).

    Returns:
        ``folder``.
    """
    folder = pathlib.Path(folder)
    state = "forced" if force else cache.build_state(folder, manifest.name, manifest.matches, what, progress)
    if state == "current" and (accept is None or accept(folder)):
        return folder
    if state == "foreign" and use_foreign is not None:
        return use_foreign(folder)
    if state in ("foreign", "unverified") and adopt is not None and adopt(folder):
        record_in_place(folder, manifest)
        return folder
    with cache.atomic_dir(folder) as tmp:
        builder(tmp)
        cache.write_record(tmp, manifest.name, manifest.record())  # with the files' sizes and sha256 digests
    return folder


def require_files(folder: str | os.PathLike, names, what: str, hint: str = "") -> None:
    """On load: every file of ``names`` is in ``folder``; a DataError names the missing ones otherwise.

    Example:
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.npy").write_bytes(b"")
    >>> require_files(folder, ["a.npy", "b.npy"], "demo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    identity_tf.datasets.cache.DataError: demo: missing file '.../b.npy'. Missing files: ['b.npy']; expected ['a.npy', 'b.npy'] in '...'.
    """
    folder = pathlib.Path(folder)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"{what}: missing file {str(folder / missing[0])!r}. Missing files: {missing}; expected {list(names)} "
            f"in {str(folder)!r}.{' ' + hint if hint else ''}"
        )


def require_foreign_files(folder: str | os.PathLike, names, record_name: str, advice: str) -> None:
    """A folder of files this module did not write (no manifest) must be complete: it is never overwritten.

    Example:
    >>> require_foreign_files("/nonexistent", ["a.npy"], "build.json", "Complete it.")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    identity_tf.datasets.cache.DataError: '/nonexistent' holds files that `build` did not write (no build.json) ...
    """
    missing = [name for name in names if not (pathlib.Path(folder) / name).is_file()]
    if missing:
        raise DataError(
            f"{str(folder)!r} holds files that `build` did not write (no {record_name}) but lacks {missing}. "
            f"{advice} It is never overwritten."
        )


def check_folder(
    folder: str | os.PathLike, names, manifest_name: str, what: str, missing_hint: str = "", corrupt_hint: str = ""
) -> None:
    """The checks of a load: every file of ``names`` is there, and a folder built here matches its manifest.

    A folder without a manifest (files the user placed) passes the second check; its contents are checked by the
    data set's own format checks.

    Raises:
        DataError: a file is missing (:func:`require_files`, with ``missing_hint``).
        CorruptDataError: a recorded file changed; the message names it, with the recorded (expected) and the
            received size or sha256, then ``corrupt_hint`` (:func:`identity_tf.datasets.cache.verify_files`).

    Example:
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.txt").write_text("built")
    >>> _ = cache.write_record(folder, "build.json", {"seed": 0})
    >>> check_folder(folder, ["a.txt"], "build.json", "demo")
    >>> _ = (folder / "a.txt").write_text("BUILT")
    >>> check_folder(folder, ["a.txt"], "build.json", "demo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    identity_tf.datasets.cache.CorruptDataError: demo in '...' differs from its build record: a.txt (sha256 ...
    """
    require_files(folder, names, what, missing_hint)
    cache.verify_record(folder, manifest_name, what, corrupt_hint)


def batches(dataset, num_examples: int, batch_size: int, shuffle: bool = False, seed: int = 0, transform=None):
    """The tail of every ``make_dataset``: shuffle (seeded, every epoch), batch, ``transform`` each batch, prefetch.

    Args:
        dataset: A ``tf.data.Dataset`` of single examples.
        num_examples: Its size (the shuffle buffer: a full shuffle).
        batch_size: Examples per batch; the last batch may be smaller.
        shuffle: Reshuffle every epoch, seeded by ``seed``.
        seed: Shuffle seed.
        transform: Optional function mapped over the batches (deterministic order).

    Example:
    >>> import tensorflow as tf
    >>> [b.numpy().tolist() for b in batches(tf.data.Dataset.range(5), 5, 2, transform=lambda x: 10 * x)]
    [[0, 10], [20, 30], [40]]
    """
    import tensorflow as tf

    if shuffle:
        dataset = dataset.shuffle(max(1, int(num_examples)), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(int(batch_size), drop_remainder=False)
    if transform is not None:
        dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


__all__ = [
    "FILE_KEYS",
    "Manifest",
    "batches",
    "check_folder",
    "ensure_built",
    "record_in_place",
    "require_files",
    "require_foreign_files",
]
