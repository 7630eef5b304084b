"""What a retrieval data set is in memory (:class:`RetrievalSet`), and its two loaders: the icon set, CUB-200-2011.

**CUB-200-2011** (the paper's data): the official folder ``CUB_200_2011/`` holds ``images.txt`` (``<image id>
<relative path>``), ``image_class_labels.txt`` (``<image id> <class id>``), ``classes.txt`` (``<class id>
<name>``, optional here) and ``images/``. Its ``train_test_split.txt`` is the *classification* split and is not
used: the retrieval split (Wah et al.; Rolinek et al. 2020) trains on classes 1-100 and tests on classes 101-200,
i.e. the first half of the class ids. Images are centre-cropped to a square and resized to ``image_size``.

Example:
>>> data = RetrievalSet(np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 0, 1, 1]), ["a", "b"], [0], [1], "demo")
>>> data.indices("train").tolist(), data.indices("test").tolist()
([0, 1], [2, 3])
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from identity_tf.datasets import protocol
from identity_tf.datasets.cache import DataError
from identity_tf.datasets.retrieval import building

CUB_FILES = ("images.txt", "image_class_labels.txt")


@dataclasses.dataclass
class RetrievalSet:
    """Images with class labels and a split of the *classes* into training and test classes.

    Attributes:
        images: ``[N, S, S, 3]`` uint8.
        labels: ``[N]`` class indices into ``class_names``.
        class_names: Name of every class.
        train_classes, test_classes: Disjoint class indices.
        source: Where the data came from (e.g. ``"icons"``, ``"cub"``).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list
    train_classes: list
    test_classes: list
    source: str

    def indices(self, split: str, classes=None) -> np.ndarray:
        """Image indices of ``"train"`` or ``"test"`` classes (or of ``classes``), in order."""
        if classes is None:
            if split not in ("train", "test"):
                raise ValueError(f"`split` must be 'train' or 'test'. Received: split={split!r}")
            classes = self.train_classes if split == "train" else self.test_classes
        return np.flatnonzero(np.isin(self.labels, np.asarray(classes, dtype=self.labels.dtype)))


def load_icons(image_size: int = 64, data_dir=None) -> RetrievalSet:
    """Loads the built icon set (:func:`identity_tf.datasets.retrieval.build`), checked against its manifest."""
    folder = building.dataset_dir(image_size, data_dir)
    protocol.check_folder(
        folder,
        building.FILES,
        building.RECORD,
        "icon retrieval set",
        missing_hint="Build it with `identity-tf data retrieval`.",
    )
    classes = json.loads((folder / "classes.json").read_text())
    return RetrievalSet(
        images=np.load(folder / "images.npy"),
        labels=np.load(folder / "labels.npy").astype(np.int32),
        class_names=list(classes["names"]),
        train_classes=list(classes["train"]),
        test_classes=list(classes["test"]),
        source="icons",
    )


def find_cub(path: str | os.PathLike | None) -> pathlib.Path | None:
    """The CUB folder at ``path`` (holding ``images.txt``) or at ``path/CUB_200_2011``; None if neither."""
    if path is None:
        return None
    path = pathlib.Path(path).expanduser()
    for candidate in (path, path / "CUB_200_2011"):
        if (candidate / "images.txt").is_file():
            return candidate
    return None


def _read_table(path: pathlib.Path, what: str) -> list[tuple[int, str]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not key.isdigit() or not value:
            raise DataError(f"{path}, line {number}: expected `<id> <{what}>`. Received: {line!r}")
        rows.append((int(key), value.strip()))
    return rows


def load_cub(folder: str | os.PathLike, image_size: int = 224) -> RetrievalSet:
    """Reads an official ``CUB_200_2011/`` folder; classes of the first half of the ids train, the rest test.

    Args:
        folder: The folder holding ``images.txt`` (or its parent).
        image_size: Side of the square images (centre crop, then antialiased resize).

    Raises:
        DataError: a file is missing, malformed, or images and labels disagree.
    """
    from PIL import Image

    root = find_cub(folder)
    if root is None:
        raise DataError(
            f"No CUB_200_2011 folder at {str(folder)!r}: expected images.txt there or in CUB_200_2011/. "
            f"Received: data_dir={str(folder)!r}"
        )
    protocol.require_files(root, CUB_FILES, "CUB-200-2011")
    paths = dict(_read_table(root / "images.txt", "path"))
    labels = dict(_read_table(root / "image_class_labels.txt", "class id"))
    if set(paths) != set(labels):
        raise DataError(
            f"CUB-200-2011 in {str(root)!r}: images.txt and image_class_labels.txt list different image ids "
            f"({len(set(paths) ^ set(labels))} differ)."
        )
    class_ids = sorted({int(v) for v in labels.values()})
    names = {cid: str(cid) for cid in class_ids}
    if (root / "classes.txt").is_file():
        names.update({cid: name for cid, name in _read_table(root / "classes.txt", "name")})
    index_of = {cid: i for i, cid in enumerate(class_ids)}
    images, label_list = [], []
    for image_id in sorted(paths):
        file = root / "images" / paths[image_id]
        if not file.is_file():
            raise DataError(f"CUB-200-2011: image {image_id} ({paths[image_id]!r}) is missing: {str(file)!r}")
        with Image.open(file) as image:
            image = image.convert("RGB")
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize(
                (image_size, image_size), Image.Resampling.LANCZOS
            )
            images.append(np.asarray(image, np.uint8))
        label_list.append(index_of[int(labels[image_id])])
    half = len(class_ids) // 2
    return RetrievalSet(
        images=np.stack(images),
        labels=np.asarray(label_list, np.int32),
        class_names=[names[cid] for cid in class_ids],
        train_classes=list(range(half)),
        test_classes=list(range(half, len(class_ids))),
        source="cub",
    )


__all__ = ["CUB_FILES", "RetrievalSet", "find_cub", "load_cub", "load_icons"]
