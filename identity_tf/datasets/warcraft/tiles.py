"""Terrains of the Warcraft build, their costs, and the committed 8x8 tile atlas they are drawn with.

The atlas ``identity_tf/datasets/assets/warcraft_tiles.npz`` holds :data:`TILE_VARIANTS` variants of each terrain's
8x8 tile, cut from Kenney's CC0 textures in the PyPI wheel ``arcade==3.3.3`` (:data:`TILE_SOURCES`). It is
committed; maintainers regenerate it with ``tools/warcraft_tile_atlas.py``
(:mod:`identity_tf.datasets.warcraft._maintainer`), nothing at run time does.

Example:
>>> load_tile_atlas().shape, TERRAIN_NAMES[TERRAIN_COSTS.index(min(TERRAIN_COSTS))]
((8, 16, 8, 8, 3), 'road')
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from identity_tf.datasets.cache import DataError

#: Terrain types, cheapest first; the index is the terrain id.
TERRAIN_NAMES = ("road", "grass", "dirt", "stone", "snow", "forest", "water", "lava")
#: Vertex weight of each terrain type (same order as :data:`TERRAIN_NAMES`).
TERRAIN_COSTS = (0.8, 1.2, 1.5, 2.0, 3.0, 5.0, 7.7, 9.2)
TILE = 8
#: Variants per terrain in the atlas.
TILE_VARIANTS = 16

ARCADE_WHEEL = ("arcade", "3.3.3", "25f4e0e5b8bcbe7a7d087c0a23b19e9f423b0c70ec00945c8712c9a3e541ebd2")
_IMAGES = "arcade/resources/assets/images/"
ATLAS_PATH = pathlib.Path(__file__).resolve().parents[1] / "assets" / "warcraft_tiles.npz"
#: Texture sources per terrain: (file under ``arcade/resources/assets/images/``, (y0, y1, x0, x1) region,
#: smallest and largest crop side in pixels); ``forest`` composes the tree sprites over ``tileGrass1.png``.
TILE_SOURCES = {
    "road": [
        ("topdown_tanks/tileSand1.png", (0, 64, 0, 64), 16, 48),
        ("topdown_tanks/tileSand2.png", (0, 64, 0, 64), 16, 48),
    ],
    "grass": [
        ("topdown_tanks/tileGrass1.png", (0, 64, 0, 64), 16, 48),
        ("topdown_tanks/tileGrass2.png", (0, 64, 0, 64), 16, 48),
    ],
    "dirt": [("tiles/grassCenter.png", (0, 128, 0, 128), 32, 96), ("tiles/sandCenter.png", (0, 128, 0, 128), 32, 96)],
    "stone": [("tiles/stoneCenter.png", (0, 128, 0, 128), 32, 96), ("tiles/brickGrey.png", (8, 120, 8, 120), 32, 96)],
    "snow": [("tiles/snow.png", (0, 48, 8, 120), 16, 48)],
    "forest": [
        ("topdown_tanks/treeGreen_large.png", (0, 64, 0, 64), 48, 64),
        ("topdown_tanks/treeGreen_small.png", (0, 64, 0, 64), 40, 64),
    ],
    "water": [("tiles/water.png", (0, 128, 0, 128), 24, 96)],
    "lava": [("tiles/lava.png", (0, 128, 0, 128), 24, 96)],
}
_FOREST_GROUND = "topdown_tanks/tileGrass1.png"


def load_tile_atlas(path: str | os.PathLike = ATLAS_PATH) -> np.ndarray:
    """The committed tile atlas: uint8 ``[len(TERRAIN_NAMES), TILE_VARIANTS, 8, 8, 3]``.

    Example:
    >>> load_tile_atlas().shape
    (8, 16, 8, 8, 3)
    """
    try:
        with np.load(path, allow_pickle=False) as atlas:
            tiles, names = atlas["tiles"], tuple(str(n) for n in atlas["names"])
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"Cannot read the Warcraft tile atlas {str(path)!r}: {error}") from error
    if (
        names != TERRAIN_NAMES
        or tiles.dtype != np.uint8
        or tiles.shape[0] != len(names)
        or tiles.shape[2:] != (8, 8, 3)
    ):
        raise DataError(f"The Warcraft tile atlas {str(path)!r} is malformed: {tiles.dtype} {tiles.shape}, {names}.")
    return tiles


__all__ = ["ARCADE_WHEEL", "ATLAS_PATH", "TERRAIN_COSTS", "TERRAIN_NAMES", "TILE", "TILE_SOURCES", "TILE_VARIANTS",
           "load_tile_atlas"]  # fmt: skip
