"""One-off conversion of the published, pickled ``countries.npy`` into the plain structured format.

Not part of the runtime path: nothing imports this module except :func:`identity_tf.datasets.globe_tsp.convert_countries`
(loaded on first use), which a user runs once on a published data set they trust.

Example:
>>> convert_countries(5)  # doctest: +SKIP
PosixPath('.../globe_tsp/5_countries_from_100/countries.npy')
"""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np

from identity_tf.datasets import cache
from identity_tf.datasets.cache import DataError
from identity_tf.datasets.globe_tsp.format import (
    COUNTRIES_DTYPE,
    NUM_COUNTRIES,
    _check_int,
    _countries_arrays,
    _load_npy,
    dataset_dir,
)


def convert_countries(k: int, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Converts a pickled (published) ``countries.npy`` of Globe TSP(k) once into the structured format.

    Calling this function is the opt-in to unpickle the file (only for a file you trust: unpickling runs any
    code stored in it). The countries are checked as :func:`load` checks them and written as a
    ``COUNTRIES_DTYPE`` array (no pickle; ``iso2`` left empty) to ``countries.npy``; the original file is kept
    beside it as ``countries.pickled.npy``. Afterwards :func:`load` and :func:`build` read the data set without
    ``allow_pickle``. A ``countries.npy`` that is already a plain array is left as it is.

    Returns:
        The path of ``countries.npy``.

    Example:
    >>> convert_countries(5)  # doctest: +SKIP
    PosixPath('.../globe_tsp/5_countries_from_100/countries.npy')
    """
    k = _check_int(k, "k", 3, NUM_COUNTRIES)
    path = dataset_dir(k, data_dir) / "countries.npy"
    try:
        raw = _load_npy(path, allow_pickle=False)
    except cache.PickleRefusedError:
        raw = _load_npy(path, allow_pickle=True)
    else:
        _countries_arrays(raw, path)  # already plain: only checked
        return path
    flags, gps, names = _countries_arrays(raw, path)
    table = np.zeros(len(flags), COUNTRIES_DTYPE)
    table["name"], table["flag"], table["gps"] = names, flags, gps
    backup = path.with_name("countries.pickled.npy")
    if backup.exists():
        raise DataError(f"Cannot keep the original {str(path)!r}: {str(backup)!r} exists already. Move one away.")
    shutil.copy2(path, backup)  # keep the original under its new name, then replace countries.npy atomically
    cache.atomic_save_npy(path, table)
    return path


__all__ = ["convert_countries"]
