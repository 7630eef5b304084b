"""Maintainers only: regenerates the committed tile atlas ``assets/warcraft_tiles.npz`` from the arcade wheel.

Never imported at run time (builds read the committed atlas with :func:`identity_tf.datasets.warcraft.load_tile_atlas`);
run ``python tools/warcraft_tile_atlas.py [arcade wheel]`` (or ``python -m identity_tf.datasets.warcraft``) after
changing :data:`~identity_tf.datasets.warcraft.tiles.TILE_SOURCES`, then commit the asset and bump the Warcraft
generator version.

Example:
>>> write_tile_atlas("arcade-3.3.3-py3-none-any.whl", out="/tmp/atlas.npz")  # doctest: +SKIP
PosixPath('/tmp/atlas.npz')
"""

from __future__ import annotations

import os
import pathlib
import zipfile

import numpy as np

from identity_tf.datasets.cache import DataError, data_dir, fetch_wheel, sha256_file
from identity_tf.datasets.warcraft.tiles import (
    _FOREST_GROUND,
    _IMAGES,
    ARCADE_WHEEL,
    ATLAS_PATH,
    TERRAIN_NAMES,
    TILE,
    TILE_SOURCES,
    TILE_VARIANTS,
)


def _decode_png(data: bytes) -> np.ndarray:
    import tensorflow as tf

    return tf.io.decode_png(data, channels=4).numpy()  # [H, W, 4] uint8


def build_tile_atlas(wheel_path: str | os.PathLike, variants: int = TILE_VARIANTS, seed: int = 0) -> dict:
    """Builds the 8x8 tile atlas from Kenney's CC0 textures inside the ``arcade`` wheel.

    Each variant is a random square crop of a source texture (side a multiple of 8 between the source's limits),
    randomly flipped / rotated, reduced to 8x8 by block averaging. Tree sprites are composed over grass first.

    Args:
        wheel_path: The ``arcade-3.3.3`` wheel (read as a zip, never installed).
        variants: Variants per terrain.
        seed: Seed of the crops.

    Returns:
        ``{"tiles": uint8 [T, variants, 8, 8, 3], "names": str [T], "sources": str [S]}``.
    """
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(wheel_path) as wheel:

        def read(name):
            try:
                return _decode_png(wheel.read(_IMAGES + name)).astype(np.float64)
            except KeyError as error:
                raise DataError(f"{wheel_path} has no {_IMAGES + name}; is it arcade==3.3.3?") from error

        ground = read(_FOREST_GROUND)[..., :3]
        tiles = np.zeros([len(TERRAIN_NAMES), variants, TILE, TILE, 3], np.uint8)
        sources = []
        for t, name in enumerate(TERRAIN_NAMES):
            images = []
            for file, (y0, y1, x0, x1), lo, hi in TILE_SOURCES[name]:
                sources.append(_IMAGES + file)
                image = read(file)
                back = 255.0
                if name == "forest":  # centre the sprite on a grass canvas of the ground's size
                    back = ground
                    pad_y, pad_x = ground.shape[0] - image.shape[0], ground.shape[1] - image.shape[1]
                    image = np.pad(image, [(pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)])
                alpha = image[..., 3:] / 255.0
                images.append(((image[..., :3] * alpha + back * (1 - alpha))[y0:y1, x0:x1], lo, hi))
            for v in range(variants):
                image, lo, hi = images[v % len(images)]
                side = int(rng.choice(np.arange(lo, min(hi, *image.shape[:2]) + 1, TILE)))
                y = int(rng.integers(image.shape[0] - side + 1))
                x = int(rng.integers(image.shape[1] - side + 1))
                crop = image[y : y + side, x : x + side]
                crop = np.rot90(crop, int(rng.integers(4)))
                if rng.integers(2):
                    crop = crop[:, ::-1]
                b = side // TILE
                small = crop.reshape(TILE, b, TILE, b, 3).mean(axis=(1, 3))
                tiles[t, v] = np.clip(np.round(small), 0, 255).astype(np.uint8)
    return {"tiles": tiles, "names": np.array(TERRAIN_NAMES), "sources": np.array(sorted(set(sources)))}


def write_tile_atlas(wheel_path: str | os.PathLike | None = None, out: str | os.PathLike = ATLAS_PATH) -> pathlib.Path:
    """Writes the committed atlas ``assets/warcraft_tiles.npz`` (run once by the maintainers).

    Args:
        wheel_path: The ``arcade==3.3.3`` wheel; default: fetched with ``pip download`` into the data directory.
        out: Output file.
    """
    name, version, sha256 = ARCADE_WHEEL
    if wheel_path is None:
        wheel_path = fetch_wheel(name, version, sha256, data_dir())
    elif sha256_file(wheel_path) != sha256:
        raise DataError(f"{wheel_path} is not the pinned {name}=={version} wheel (sha256 {sha256}).")
    atlas = build_tile_atlas(wheel_path)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
    with open(tmp, "wb") as file:
        np.savez_compressed(file, **atlas)
    os.replace(tmp, out)
    return out


__all__ = ["build_tile_atlas", "write_tile_atlas"]
