"""Keypoint images and their pairs: the in-memory format of every graph-matching source, its files and checks.

A split is a :class:`KeypointImages`: images, each with its keypoints indexed by a per-class keypoint id
(``points[i, k]`` = keypoint ``k`` of image ``i``, NaN where it is not visible), optional outliers (points
without a correspondence), and the list of image pairs to match. :func:`assemble` turns the pairs into the
padded arrays the model reads: the keypoints visible in both images (BB-GM's intersection filtering), the
source in keypoint-id order, the target shuffled (with the target's outliers), the permutation as the label,
and the directed Delaunay graphs of both.

Files of a built split ``<split>`` (offline build): ``<split>_images.npy`` uint8 ``[N, S, S, 3]``,
``<split>_points.npy`` float32 ``[N, K, 2]`` (x, y pixels, NaN = not visible), ``<split>_outliers.npy`` float32
``[N, O, 2]`` (NaN = none), ``<split>_classes.npy`` int32 ``[N]``, ``<split>_pairs.npy`` int32 ``[P, 2]``, and
``classes.json`` (the class names).

Example:
>>> import numpy as np
>>> nan = np.nan
>>> split = KeypointImages(
...     images=np.zeros([2, 8, 8, 3], np.uint8),
...     points=np.array([[[1, 1], [6, 1], [1, 6], [nan, nan]], [[2, 2], [7, 2], [2, 7], [5, 5]]], np.float32),
...     classes=np.zeros(2, np.int32), outliers=np.full([2, 0, 2], nan, np.float32),
...     pairs=np.array([[0, 1]], np.int32), class_names=["square"])
>>> pairs = assemble(split, seed=0)
>>> int(pairs.num_nodes1[0]), int(pairs.num_nodes2[0])   # keypoint 3 is visible in one image only
(3, 3)
>>> bool(np.allclose(pairs.points2[0][pairs.perm[0]], pairs.points1[0] + 1 / 8))  # the label recovers the match
True
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from identity_tf.datasets.cache import DataError
from identity_tf.datasets.graph_matching.geometry import delaunay_edges

FIELDS = ("images", "points", "outliers", "classes", "pairs")
CLASSES_FILE = "classes.json"


@dataclasses.dataclass
class KeypointImages:
    """One split: images with keypoints and the pairs to match (see the module).

    Attributes:
        images: uint8 ``[N, S, S, 3]``.
        points: float32 ``[N, K, 2]`` keypoint ``k`` of image ``i`` in pixels (x, y); NaN = not visible.
        outliers: float32 ``[N, O, 2]`` points without a correspondence, added to the image's side when it is
            the target of a pair; NaN = none.
        classes: int32 ``[N]`` class index of each image.
        pairs: int32 ``[P, 2]`` (source image, target image) of each matching instance.
        class_names: Name of each class index.
    """

    images: np.ndarray
    points: np.ndarray
    outliers: np.ndarray
    classes: np.ndarray
    pairs: np.ndarray
    class_names: list

    def __post_init__(self):
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.shape[1] != self.images.shape[2]:
            raise DataError(f"`images` must be [N, S, S, 3]. Received: images.shape={self.images.shape}")
        for name in ("points", "outliers"):
            array = getattr(self, name)
            if array.ndim != 3 or array.shape[0] != n or array.shape[2] != 2:
                raise DataError(f"`{name}` must be [N, K, 2] with N={n}. Received: {name}.shape={array.shape}")
        if self.classes.shape != (n,):
            raise DataError(f"`classes` must be [N] with N={n}. Received: classes.shape={self.classes.shape}")
        if self.pairs.ndim != 2 or self.pairs.shape[1] != 2 or (len(self.pairs) and not 0 <= self.pairs.min()):
            raise DataError(f"`pairs` must be [P, 2] image indices. Received: pairs.shape={self.pairs.shape}")
        if len(self.pairs) and self.pairs.max() >= n:
            raise DataError(f"`pairs` refers to image {int(self.pairs.max())} of {n}.")

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def limit(self, max_pairs: int | None) -> KeypointImages:
        """The split with ``max_pairs`` of its pairs (None: all), taken class by class in turn: the first pair of
        every class, then the second, ... (so a limit keeps every class; pairs are stored class after class).

        Example:
        >>> split = KeypointImages(np.zeros([4, 2, 2, 3], np.uint8), np.zeros([4, 1, 2], np.float32),
        ...     np.zeros([4, 0, 2], np.float32), np.array([0, 0, 1, 1], np.int32),
        ...     np.array([[0, 1], [1, 0], [2, 3], [3, 2]], np.int32), ["a", "b"])
        >>> split.limit(3).pairs.tolist()
        [[0, 1], [2, 3], [1, 0]]
        """
        if max_pairs is None or max_pairs >= len(self.pairs):
            return self
        classes = self.classes[self.pairs[:, 0]]
        rank = np.zeros(len(classes), np.int64)
        for c in np.unique(classes):
            rank[classes == c] = np.arange((classes == c).sum())
        order = np.lexsort((classes, rank))[:max_pairs]
        return dataclasses.replace(self, pairs=self.pairs[order])


@dataclasses.dataclass
class PairArrays:
    """The padded matching instances of a split (what :func:`assemble` returns).

    Attributes:
        points1, points2: float32 ``[P, n, 2]`` / ``[P, m, 2]`` keypoints in image units (pixels / S), 0-padded.
        num_nodes1, num_nodes2: int32 ``[P]`` real keypoints of each side.
        edges1, edges2: int32 ``[P, E, 2]`` directed Delaunay edges, rows of -1 pad.
        perm: int32 ``[P, n]``: source keypoint ``i`` is target keypoint ``perm[i]`` (-1 on padding).
        image_index: int32 ``[P, 2]`` the pair's images in the split.
        classes: int32 ``[P]`` the pair's class.
    """

    points1: np.ndarray
    points2: np.ndarray
    num_nodes1: np.ndarray
    num_nodes2: np.ndarray
    edges1: np.ndarray
    edges2: np.ndarray
    perm: np.ndarray
    image_index: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.perm)

    def matrices(self) -> np.ndarray:
        """The true node matchings ``[P, n, m]`` float32 (0/1)."""
        x = np.zeros((len(self), self.points1.shape[1], self.points2.shape[1]), np.float32)
        rows, cols = np.nonzero(self.perm >= 0)
        x[rows, cols, self.perm[rows, cols]] = 1.0
        return x


def instance(split: KeypointImages, index: int, seed: int):
    """Pair ``index`` of ``split``: ``(source points [n, 2], target points [m, 2], perm [n])`` in pixels.

    The source holds the keypoints visible in both images in id order, the target the same keypoints then the
    target image's outliers, shuffled by a generator seeded with ``(seed, index)``; ``target[perm[i]]`` is the
    true match of ``source[i]``.
    """
    s, t = (int(v) for v in split.pairs[index])
    common = np.flatnonzero(np.isfinite(split.points[s, :, 0]) & np.isfinite(split.points[t, :, 0]))
    source = split.points[s, common].astype(np.float64)
    outliers = split.outliers[t][np.isfinite(split.outliers[t, :, 0])]
    target = np.concatenate([split.points[t, common], outliers]).astype(np.float64)
    order = np.random.default_rng([seed, index]).permutation(len(target))  # shuffled position -> original
    perm = np.argsort(order)[: len(common)]  # original position -> shuffled position
    return source, target[order], perm


def pair_sizes(split: KeypointImages) -> tuple[int, int]:
    """The largest ``(source, target)`` node counts of the split's pairs (common keypoints, plus outliers)."""
    if not len(split.pairs):
        return 1, 1
    visible = np.isfinite(split.points[..., 0])
    common = (visible[split.pairs[:, 0]] & visible[split.pairs[:, 1]]).sum(axis=1)
    outliers = np.isfinite(split.outliers[..., 0]).sum(axis=1)[split.pairs[:, 1]]
    return int(common.max()), int((common + outliers).max())


def assemble(
    split: KeypointImages, seed: int, max_nodes1: int | None = None, max_nodes2: int | None = None
) -> PairArrays:
    """The padded matching instances of every pair of ``split`` (see the module); pads to the given sizes.

    Raises:
        DataError: a pair has fewer than two common keypoints, or more than ``max_nodes1`` / ``max_nodes2``.
    """
    instances = [instance(split, i, seed) for i in range(len(split.pairs))]
    for i, (source, _, _) in enumerate(instances):
        if len(source) < 2:
            raise DataError(f"Pair {i} {split.pairs[i].tolist()} has {len(source)} common keypoints (at least 2).")
    n = max([len(a) for a, _, _ in instances], default=1)
    m = max([len(b) for _, b, _ in instances], default=1)
    for label, value, needed in (("max_nodes1", max_nodes1, n), ("max_nodes2", max_nodes2, m)):
        if value is not None and value < needed:
            raise DataError(f"`{label}` must be >= {needed} (the largest pair of the split). Received: {label}={value}")
    n, m = max_nodes1 or n, max_nodes2 or m
    graphs = [(delaunay_edges(a), delaunay_edges(b)) for a, b, _ in instances]
    e1, e2 = 2 * (3 * n - 6) if n > 2 else 2, 2 * (3 * m - 6) if m > 2 else 2  # Delaunay's bound, both directions
    count = len(instances)
    out = PairArrays(
        points1=np.zeros((count, n, 2), np.float32),
        points2=np.zeros((count, m, 2), np.float32),
        num_nodes1=np.zeros(count, np.int32),
        num_nodes2=np.zeros(count, np.int32),
        edges1=np.full((count, e1, 2), -1, np.int32),
        edges2=np.full((count, e2, 2), -1, np.int32),
        perm=np.full((count, n), -1, np.int32),
        image_index=split.pairs.astype(np.int32),
        classes=split.classes[split.pairs[:, 0]].astype(np.int32),
    )
    size = float(split.image_size)
    for i, ((source, target, perm), (g1, g2)) in enumerate(zip(instances, graphs)):
        out.points1[i, : len(source)] = source / size
        out.points2[i, : len(target)] = target / size
        out.num_nodes1[i], out.num_nodes2[i] = len(source), len(target)
        out.edges1[i, : len(g1)], out.edges2[i, : len(g2)] = g1, g2
        out.perm[i, : len(perm)] = perm
    return out


# --------------------------------------------------------------------------------------------------- files
def split_files(split: str) -> list[str]:
    """The files of a built split."""
    return [f"{split}_{field}.npy" for field in FIELDS]


def save_split(folder: pathlib.Path, name: str, split: KeypointImages) -> None:
    """Writes ``split`` as the files of split ``name`` into ``folder`` (``classes.json`` is written by the build)."""
    for field in FIELDS:
        np.save(folder / f"{name}_{field}.npy", getattr(split, field))


def load_split(folder: pathlib.Path, name: str) -> KeypointImages:
    """Reads split ``name`` of a built folder (after :func:`identity_tf.datasets.protocol.check_folder`)."""
    folder = pathlib.Path(folder)
    class_names = json.loads((folder / CLASSES_FILE).read_text())
    arrays = {field: np.load(folder / f"{name}_{field}.npy") for field in FIELDS}
    return KeypointImages(**arrays, class_names=class_names)


__all__ = [
    "CLASSES_FILE",
    "FIELDS",
    "KeypointImages",
    "PairArrays",
    "assemble",
    "instance",
    "pair_sizes",
    "load_split",
    "save_split",
    "split_files",
]
