"""The Globe TSP file format: one folder per k, its checks, and :func:`load`.

``<data_dir>/globe_tsp/<k>_countries_from_100/`` holds (the original's layout)

* ``countries.npy``: the 100 countries, a :data:`COUNTRIES_DTYPE` structured array (``name``, ``iso2``, ``flag``
  ``uint8 (20, 40, 3)``, ``gps`` = (longitude, latitude) in degrees). The published file's pickled layouts (rows
  ``(name, gps, flag)``, dicts, a pair ``(flags, gps)``) are read only with ``allow_pickle=True`` (unpickling runs
  any code a file carries) or after a one-off :func:`identity_tf.datasets.globe_tsp.convert_countries`;
* ``train_indices.npy`` / ``test_indices.npy``: ``[N, k]`` integers, the distinct countries of each example;
* ``train_tsp_tours.npy`` / ``test_tsp_tours.npy``: ``[N, k, k]`` 0/1 adjacency of the optimal tour (symmetric,
  zero diagonal, one cycle through all k cities);
* ``provenance.json`` (the manifest, :mod:`identity_tf.datasets.protocol`; only in folders built here).

Every check names the file, what was expected and what was received.

Example:
>>> dataset_dir(5, "/data").as_posix()
'/data/globe_tsp/5_countries_from_100'
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from identity_tf.datasets import cache, protocol
from identity_tf.datasets.cache import DataError

NAME = "globe_tsp"
#: Countries in the data set.
NUM_COUNTRIES = 100
#: Shape of one flag image, (height, width, RGB).
FLAG_SHAPE = (20, 40, 3)
#: Structured dtype of ``countries.npy`` as written by :func:`identity_tf.datasets.globe_tsp.build`.
COUNTRIES_DTYPE = np.dtype([("name", "U64"), ("iso2", "U2"), ("flag", np.uint8, FLAG_SHAPE), ("gps", np.float64, (2,))])
SPLITS = ("train", "val", "test")
FORMAT_VERSION = 1
_FILES = ("countries.npy", "train_indices.npy", "test_indices.npy", "train_tsp_tours.npy", "test_tsp_tours.npy")
#: The manifest of a folder built here.
RECORD = "provenance.json"


@dataclasses.dataclass(frozen=True)
class GlobeTSPData:
    """Globe TSP(k) arrays, as read by :func:`load`.

    Attributes:
        flags: ``[C, 20, 40, 3]`` uint8 flags of the ``C`` (= 100) countries.
        gps: ``[C, 2]`` float64 capital coordinates, (longitude, latitude) in degrees.
        names: ``[C]`` country names (``str``).
        train_indices: ``[N_train, k]`` int64 country indices of each training example.
        train_tours: ``[N_train, k, k]`` uint8 adjacency of the optimal tour of each training example.
        test_indices: ``[N_test, k]`` int64.
        test_tours: ``[N_test, k, k]`` uint8.

    Example:
    >>> data = load(5)  # doctest: +SKIP
    >>> data.k, data.flags.shape  # doctest: +SKIP
    (5, (100, 20, 40, 3))
    """

    flags: np.ndarray
    gps: np.ndarray
    names: np.ndarray
    train_indices: np.ndarray
    train_tours: np.ndarray
    test_indices: np.ndarray
    test_tours: np.ndarray

    @property
    def k(self) -> int:
        """Number of countries per example."""
        return int(self.train_indices.shape[1])

    @property
    def num_countries(self) -> int:
        """Number of countries the examples are drawn from."""
        return int(self.flags.shape[0])


def _check_int(value, name: str, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"Argument `{name}` must be {bound}. Received: {name}={value!r}")
    return int(value)


def dataset_dir(k: int, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """``<data_dir>/globe_tsp/<k>_countries_from_100`` (not created).

    Example:
    >>> dataset_dir(5, "/data").as_posix()
    '/data/globe_tsp/5_countries_from_100'
    """
    root = pathlib.Path(data_dir).expanduser() if data_dir is not None else cache.data_dir()
    return root / NAME / f"{k}_countries_from_{NUM_COUNTRIES}"


_PICKLE_HINT = (
    "The published countries.npy is such an array. If you trust the file, read it with "
    "`load(k, allow_pickle=True)` / `build(k, allow_pickle=True)`, or convert it once into a plain structured "
    "array with `identity_tf.datasets.globe_tsp.convert_countries(k)`."
)
_ARRAY_HINT = "Index and tour files are plain integer arrays: an object (pickled) array there is never read."


def _load_npy(path: pathlib.Path, allow_pickle: bool = False):
    """One array of the data set; only ``countries.npy`` may be unpickled, and only with ``allow_pickle``."""
    if path.name == "countries.npy":
        return cache.load_npy(path, allow_pickle=allow_pickle, pickle_hint=_PICKLE_HINT)
    return cache.load_npy(path, allow_pickle=False, pickle_hint=_ARRAY_HINT)


def _split_record(record, path) -> tuple:
    """(name, flag, gps) of one country given as a dict or a (name, gps, flag)-like sequence."""
    if isinstance(record, dict):
        if "flag" not in record or "gps" not in record:
            raise DataError(
                f"{str(path)!r}: a country dict needs keys 'flag' and 'gps'. Received keys: {sorted(record)}"
            )
        return record.get("name", record.get("country")), record["flag"], record["gps"]
    name = flag = gps = None
    for item in record:
        if isinstance(item, (str, np.str_)):
            name = str(item)
        elif np.size(item) == 2:
            gps = item
        elif np.size(item) == int(np.prod(FLAG_SHAPE)):
            flag = item
    if flag is None or gps is None:
        raise DataError(
            f"{str(path)!r}: expected each country as (name, gps, flag) with a {FLAG_SHAPE} flag and 2 coordinates. "
            f"Received a record with sizes {[np.size(item) for item in record]}"
        )
    return name, flag, gps


def _countries_arrays(raw, path: pathlib.Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flags [C, 20, 40, 3] uint8, gps [C, 2] float64, names [C] str) from any accepted countries.npy layout."""
    names = None
    if raw.dtype.names is not None:  # structured array (what `build` writes)
        fields = set(raw.dtype.names)
        flag_field = "flag" if "flag" in fields else "flags"
        if flag_field not in fields or "gps" not in fields:
            raise DataError(
                f"{str(path)!r}: a structured countries array needs fields 'flag' and 'gps'. "
                f"Received fields: {raw.dtype.names}"
            )
        flags, gps = raw[flag_field], raw["gps"]
        names = raw["name"] if "name" in fields else None
    elif raw.dtype == object:
        if raw.ndim == 0:  # a single pickled object: {'flags': ..., 'gps': ...} or (flags, gps)
            item = raw.item()
            if isinstance(item, dict):
                flags, gps = item.get("flags", item.get("flag")), item.get("gps")
                names = item.get("names", item.get("name"))
                if flags is None or gps is None:
                    raise DataError(f"{str(path)!r}: expected keys 'flags' and 'gps'. Received keys: {sorted(item)}")
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                flags, gps = item
            else:
                raise DataError(f"{str(path)!r}: cannot read countries from a {type(item).__name__} object.")
        elif raw.ndim == 1 and len(raw) == 2 and all(np.ndim(item) >= 2 for item in raw):  # (flags, gps)
            flags, gps = raw
        else:  # one record per country: dicts or (name, gps, flag) rows
            rows = [_split_record(record, path) for record in raw]
            names = [row[0] for row in rows]
            flags = np.stack([np.asarray(row[1]) for row in rows]) if rows else np.zeros((0, *FLAG_SHAPE))
            gps = np.stack([np.asarray(row[2], np.float64).reshape(2) for row in rows]) if rows else np.zeros((0, 2))
            if any(name is None for name in names):
                names = None
    else:
        raise DataError(
            f"{str(path)!r}: expected a structured or object array of countries. "
            f"Received an array of dtype {raw.dtype} and shape {raw.shape}"
        )

    flags, gps = np.asarray(flags), np.asarray(gps)
    if flags.ndim != 4 or flags.shape[1:] != FLAG_SHAPE:
        raise DataError(
            f"{str(path)!r}: expected flags of shape [C, {', '.join(map(str, FLAG_SHAPE))}]. Received: {flags.shape}"
        )
    if flags.dtype != np.uint8:
        if not np.all(np.isfinite(flags)) or flags.min(initial=0) < 0 or flags.max(initial=0) > 255:
            raise DataError(f"{str(path)!r}: expected uint8 flags (0..255). Received dtype {flags.dtype}.")
        flags = np.rint(flags).astype(np.uint8)
    gps = gps.astype(np.float64)
    if gps.shape != (len(flags), 2):
        raise DataError(f"{str(path)!r}: expected gps of shape [{len(flags)}, 2] (lon, lat). Received: {gps.shape}")
    if not np.all(np.isfinite(gps)) or np.any(np.abs(gps[:, 0]) > 180) or np.any(np.abs(gps[:, 1]) > 90):
        raise DataError(
            f"{str(path)!r}: gps must be finite (longitude, latitude) in degrees, |lon| <= 180, |lat| <= 90."
        )
    if names is None:
        names = [f"country_{i}" for i in range(len(flags))]
    return flags, gps, np.asarray([str(name) for name in names])


def _check_indices(indices, k: int, num_countries: int, path: pathlib.Path) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 2 or not np.issubdtype(indices.dtype, np.integer):
        raise DataError(
            f"{str(path)!r}: expected integer indices of shape [N, k]. Received {indices.dtype} {indices.shape}"
        )
    if indices.shape[1] != k:
        raise DataError(f"{str(path)!r}: expected k={k} countries per example. Received: shape {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= num_countries):
        raise DataError(
            f"{str(path)!r}: country indices must lie in [0, {num_countries}). "
            f"Received: min {indices.min()}, max {indices.max()}"
        )
    if np.any(np.diff(np.sort(indices, axis=1), axis=1) == 0):
        raise DataError(f"{str(path)!r}: every example needs k distinct countries; some rows repeat one.")
    return indices.astype(np.int64)


def _check_tours(tours, num: int, k: int, path: pathlib.Path) -> np.ndarray:
    tours = np.asarray(tours)
    if tours.shape != (num, k, k):
        raise DataError(f"{str(path)!r}: expected tours of shape [{num}, {k}, {k}]. Received: {tours.shape}")
    if tours.dtype == object or not np.all((tours == 0) | (tours == 1)):
        raise DataError(f"{str(path)!r}: tours must be 0/1 adjacency matrices.")
    tours = tours.astype(np.uint8)
    if not np.array_equal(tours, np.swapaxes(tours, 1, 2)) or np.any(np.trace(tours, axis1=1, axis2=2)):
        raise DataError(f"{str(path)!r}: tours must be symmetric with a zero diagonal.")
    if np.any(tours.sum(axis=2) != 2):
        raise DataError(f"{str(path)!r}: every city of a tour needs exactly 2 edges (row sums 2).")
    if num and not np.all(_is_single_cycle(tours)):
        raise DataError(f"{str(path)!r}: tours must be single cycles through all k cities (no subtours).")
    return tours


def _is_single_cycle(tours: np.ndarray) -> np.ndarray:
    """[N] bool: the degree-2 graphs ``tours`` [N, k, k] are one cycle (walk k steps from city 0)."""
    num, k = tours.shape[:2]
    neighbours = np.argsort(-tours.astype(np.int8), axis=2, kind="stable")[:, :, :2]  # [N, k, 2]
    rows = np.arange(num)
    previous, current = np.zeros(num, np.int64), neighbours[:, 0, 0]
    visited = np.zeros((num, k), bool)
    visited[:, 0] = True
    for _ in range(k - 1):
        visited[rows, current] = True
        first, second = neighbours[rows, current, 0], neighbours[rows, current, 1]
        previous, current = current, np.where(first == previous, second, first)
    return visited.all(axis=1) & (current == 0)


def load(k: int, data_dir: str | os.PathLike | None = None, allow_pickle: bool = False) -> GlobeTSPData:
    """Reads Globe TSP(k) from ``<data_dir>/globe_tsp/<k>_countries_from_100/`` and checks it.

    Works on what :func:`build` writes and on the published files placed in that layout. No file is unpickled
    unless ``allow_pickle`` is True, and then only ``countries.npy`` (the published one is a pickled object
    array); index and tour files are never unpickled. A folder built here is first checked against the sizes and
    digests of its manifest.

    Args:
        k: Countries per example.
        data_dir: Root data directory (see :func:`identity_tf.datasets.cache.data_dir`).
        allow_pickle: Read a pickled ``countries.npy`` (the published format). Unpickling runs any code stored
            in the file: only for a file you trust. :func:`convert_countries` converts it once instead.

    Raises:
        DataError: the directory or a file is missing, empty or truncated, an array has the wrong shape, dtype
            or values (indices out of range or repeated, tours that are not single cycles, ``k`` mismatch), or
            (:class:`~identity_tf.datasets.cache.PickleRefusedError`) a file is a pickled array that may not be
            read.

    Example:
    >>> data = load(5)  # doctest: +SKIP
    >>> data.train_indices.shape, data.train_tours.shape  # doctest: +SKIP
    ((10000, 5), (10000, 5, 5))
    """
    k = _check_int(k, "k", 3)
    path = dataset_dir(k, data_dir)
    if not path.is_dir():
        raise DataError(
            f"Globe TSP({k}) not found: {str(path)!r} does not exist. Build it with "
            f"`identity_tf.datasets.globe_tsp.build({k})` or `identity-tf data globe_tsp --k {k}` "
            "(pass the same data_dir / set IDENTITY_TF_DATA_DIR), or place the published files there."
        )
    protocol.check_folder(
        path,
        _FILES,
        RECORD,
        f"Globe TSP({k})",
        corrupt_hint=f"It was built here: `identity_tf.datasets.globe_tsp.build({k}, ...)` with the same sizes and "
        f"seed (or `identity-tf data globe_tsp --k {k}`) rebuilds it.",
    )
    countries_path = path / "countries.npy"
    flags, gps, names = _countries_arrays(_load_npy(countries_path, allow_pickle), countries_path)
    arrays = {}
    for split in ("train", "test"):
        indices_path, tours_path = path / f"{split}_indices.npy", path / f"{split}_tsp_tours.npy"
        indices = _check_indices(_load_npy(indices_path), k, len(flags), indices_path)
        arrays[f"{split}_indices"] = indices
        arrays[f"{split}_tours"] = _check_tours(_load_npy(tours_path), len(indices), k, tours_path)
    return GlobeTSPData(flags=flags, gps=gps, names=names, **arrays)


__all__ = [
    "COUNTRIES_DTYPE",
    "FLAG_SHAPE",
    "FORMAT_VERSION",
    "GlobeTSPData",
    "NUM_COUNTRIES",
    "RECORD",
    "SPLITS",
    "dataset_dir",
    "load",
]
