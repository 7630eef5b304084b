"""Keypoint matching data (paper 4.2): Pascal VOC / SPair-71k loaders and an offline build from real photos.

No registry ships the VOC or SPair keypoints, so there are two kinds of source:

* **Published data** placed by the user (:mod:`.real`): ``<data_dir>/graph_matching/PascalVOC/`` (VOC 2011
  images + the Berkeley keypoint annotations, BB-GM's intersection filtering) or
  ``<data_dir>/graph_matching/SPair-71k/`` (its ``PairAnnotation``/``JPEGImages`` layout), read as they are.
* **The offline default** (:mod:`.building`): pairs of random affine + smooth warps of scikit-image's sample
  photos (one class per photo, held-out warps for testing), keypoint jitter, outliers in the target, shuffled
  target order (the permutation is the label), plus scikit-image's real stereo pair with ground-truth disparity
  as a real-correspondence evaluation split (``stereo``). Built once into
  ``<data_dir>/graph_matching/offline_<S>px`` with ``build.json`` (parameters, sources pinned by sha256, and the
  size and sha256 of every file, checked on every load; :mod:`identity_tf.datasets.protocol`).

Every source gives :class:`KeypointImages` splits; :func:`assemble` makes the padded matching instances
(directed Delaunay graphs, :func:`delaunay_edges`) and :func:`make_dataset` the ``tf.data`` pipeline.

**Layout of this package**: :mod:`.geometry` (Delaunay, Harris corners, warps), :mod:`.format` (the split
format, pair assembly, files), :mod:`.building` (the offline build), :mod:`.real` (VOC, SPair),
:mod:`.pipeline` (``tf.data``).

Example:
>>> import tempfile
>>> folder = build(tempfile.mkdtemp(), image_size=64)  # doctest: +SKIP
>>> splits = load(folder.parents[1], image_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

from identity_tf.datasets import cache
from identity_tf.datasets.graph_matching import real
from identity_tf.datasets.graph_matching.building import (
    CLASS_IMAGES,
    SOURCES,
    STEREO,
    build,
    folder_of,
    load,
)
from identity_tf.datasets.graph_matching.format import (
    KeypointImages,
    PairArrays,
    assemble,
    instance,
    pair_sizes,
)
from identity_tf.datasets.graph_matching.geometry import Warp, delaunay_edges, harris_corners
from identity_tf.datasets.graph_matching.pipeline import INPUT_KEYS, make_dataset

SOURCE_NAMES = ("auto", "offline", "voc", "spair")


def resolve_source(source: str, data_dir=None) -> str:
    """``"auto"`` -> "voc" / "spair" when that data set is under ``<data_dir>/graph_matching/``, else "offline".

    Example:
    >>> import tempfile
    >>> resolve_source("auto", tempfile.mkdtemp())
    'offline'
    """
    if source not in SOURCE_NAMES:
        raise ValueError(f"Argument `source` must be one of {SOURCE_NAMES}. Received: source={source!r}")
    if source != "auto":
        return source
    return real.detect(cache.data_dir(data_dir)) or "offline"


def load_source(
    source: str,
    data_dir=None,
    image_size: int = 256,
    instances: dict | None = None,
    pairs: dict | None = None,
    num_outliers: int = 2,
    jitter: float = 0.005,
    num_stereo: int = 20,
    seed: int = 0,
) -> dict[str, KeypointImages]:
    """The splits of ``source`` (see :func:`resolve_source`); the offline data set is built first if needed."""
    source = resolve_source(source, data_dir)
    root = cache.data_dir(data_dir) / "graph_matching"
    pairs = {"train": 250, "val": 25, "test": 100, **(pairs or {})}
    if source == "voc":
        return real.load_voc(root / real.VOC_FOLDER, image_size, pairs, seed)
    if source == "spair":
        return real.load_spair(root / real.SPAIR_FOLDER, image_size)
    build(data_dir, image_size, instances, pairs, num_outliers, jitter, num_stereo, seed, progress=True)
    return load(data_dir, image_size)


__all__ = [
    "CLASS_IMAGES",
    "INPUT_KEYS",
    "KeypointImages",
    "PairArrays",
    "SOURCES",
    "SOURCE_NAMES",
    "STEREO",
    "Warp",
    "assemble",
    "build",
    "delaunay_edges",
    "folder_of",
    "harris_corners",
    "instance",
    "load",
    "load_source",
    "make_dataset",
    "pair_sizes",
    "real",
]
