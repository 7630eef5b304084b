"""The published Warcraft shortest-path format, its checks, and :func:`load`.

``<data_dir>/warcraft/<k>x<k>/{train,val,test}_{maps,shortest_paths,vertex_weights}.npy``: uint8 maps
``(N, 8k, 8k, 3)``, 0/1 paths ``(N, k, k)`` from the top-left to the bottom-right vertex, and terrain costs
``(N, k, k)``; ``provenance.json`` is the manifest of a folder built here (:mod:`identity_tf.datasets.protocol`).

Example:
>>> _split_dir(12, "/tmp").as_posix().endswith("warcraft/12x12")
True
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from identity_tf.datasets import protocol
from identity_tf.datasets.cache import DataError, data_dir, load_npy
from identity_tf.datasets.warcraft.tiles import TILE

SPLITS = ("train", "val", "test")
FIELDS = ("maps", "shortest_paths", "vertex_weights")
#: The manifest of a folder built here.
RECORD = "provenance.json"
#: The nine files of a data set folder.
FILES = tuple(f"{split}_{field}.npy" for split in SPLITS for field in FIELDS)


def _size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"Argument `size` must be an integer >= 2. Received: size={size!r}")
    return int(size)


def _split_dir(size: int, root) -> pathlib.Path:
    return data_dir(root) / "warcraft" / f"{size}x{size}"


@dataclasses.dataclass
class WarcraftSplit:
    """One split: ``maps`` uint8 ``[N, 8k, 8k, 3]``, ``shortest_paths`` ``[N, k, k]`` 0/1, ``vertex_weights``
    ``[N, k, k]``."""

    maps: np.ndarray
    shortest_paths: np.ndarray
    vertex_weights: np.ndarray

    def __len__(self) -> int:
        return len(self.maps)


def load(size: int, data_dir: str | os.PathLike | None = None, mmap: bool = False) -> dict[str, WarcraftSplit]:
    """Loads and checks ``<data_dir>/warcraft/<k>x<k>`` (the published format or the offline build).

    Args:
        size: Grid side ``k``.
        data_dir: Data directory (default: ``IDENTITY_TF_DATA_DIR`` or ``~/.cache/identity_tf``).
        mmap: Memory-map the maps instead of reading them (large sizes).

    Returns:
        ``{"train" | "val" | "test": WarcraftSplit}``.

    Raises:
        DataError: Missing directory or files, or inconsistent contents.
    """
    size = _size(size)
    folder = _split_dir(size, data_dir)
    if not folder.is_dir():
        hint = " (the paper's 32x32 maps are the 30x30 ones: use size=30)" if size == 32 else ""
        raise DataError(
            f"No Warcraft data for size {size} at {str(folder)!r}{hint}. Place the published "
            f"{size}x{size} folder there, or build the offline version with "
            f"`identity_tf.datasets.warcraft.build({size})` or `identity-tf data warcraft --size {size}`."
        )
    rebuild = f"`identity_tf.datasets.warcraft.build({size}, ...)` with the same sizes and seed rebuilds it."
    protocol.check_folder(
        folder,
        FILES,
        RECORD,
        f"Warcraft {size}x{size}",
        missing_hint=f"Rebuild with `identity_tf.datasets.warcraft.build({size})`.",
        corrupt_hint=f"It was built here: {rebuild}",
    )
    splits = {}
    for split in SPLITS:
        arrays = {}
        for field in FIELDS:
            path = folder / f"{split}_{field}.npy"
            arrays[field] = load_npy(path, mmap_mode="r" if mmap and field == "maps" else None)
        _check_split(split, size, folder, **arrays)
        splits[split] = WarcraftSplit(**arrays)
    return splits


def _check_split(split, size, folder, maps, shortest_paths, vertex_weights) -> None:
    where = f"{folder}/{split}_*.npy"
    if maps.ndim != 4 or maps.shape[1:] != (TILE * size, TILE * size, 3) or maps.dtype != np.uint8:
        raise DataError(
            f"{where}: maps must be uint8 of shape (N, {TILE * size}, {TILE * size}, 3). "
            f"Received: {maps.dtype} {maps.shape}"
        )
    n = len(maps)
    for name, array in (("shortest_paths", shortest_paths), ("vertex_weights", vertex_weights)):
        if array.shape != (n, size, size):
            raise DataError(f"{where}: {name} must have shape ({n}, {size}, {size}). Received: {array.shape}")
    if not (np.issubdtype(vertex_weights.dtype, np.number) and np.all(np.isfinite(vertex_weights))):
        raise DataError(f"{where}: vertex_weights must be finite numbers.")
    if np.any(vertex_weights < 0):
        raise DataError(f"{where}: vertex_weights must be >= 0; found {int(np.sum(vertex_weights < 0))} negative.")
    if not np.all((shortest_paths == 0) | (shortest_paths == 1)):
        raise DataError(f"{where}: shortest_paths must be 0/1 indicators.")
    if n and not (np.all(shortest_paths[:, 0, 0] == 1) and np.all(shortest_paths[:, -1, -1] == 1)):
        raise DataError(f"{where}: every shortest path must contain the top-left and bottom-right vertices.")


__all__ = ["FIELDS", "FILES", "RECORD", "SPLITS", "WarcraftSplit", "load"]
