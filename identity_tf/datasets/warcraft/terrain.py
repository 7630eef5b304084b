"""Synthetic Warcraft-like maps: terrain layouts from smooth random fields, drawn with the tile atlas.

Elevation, moisture and heat are two octaves of bilinearly upsampled Gaussian noise; thresholds (drawn per map)
turn them into water < grass / dirt / forest < stone < snow, with lava patches on half of the maps, and 0-3 roads
are drawn through a random waypoint between two border cells. :func:`render_maps` draws every vertex as a random
variant of its terrain's 8x8 tile.

Example:
>>> types = generate_terrain(np.random.default_rng(0), 2, 12)
>>> types.shape, bool(types.min() >= 0 and types.max() < len(TERRAIN_NAMES))
((2, 12, 12), True)
"""

from __future__ import annotations

import numpy as np

from identity_tf.datasets.warcraft.tiles import TERRAIN_NAMES, TILE


def _upsample_matrix(k: int, g: int) -> np.ndarray:
    """``[k, g]`` linear interpolation from ``g`` grid points to ``k`` cells."""
    x = np.linspace(0.0, g - 1.0, k)
    lo = np.minimum(np.floor(x).astype(int), g - 2)
    frac = x - lo
    matrix = np.zeros([k, g])
    matrix[np.arange(k), lo] = 1 - frac
    matrix[np.arange(k), lo + 1] = frac
    return matrix


def _smooth_field(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``[n, k, k]`` smooth random field, standardised per map."""
    field = np.zeros([n, k, k])
    g = max(2, round(k / 6)) + 1
    for octave, amplitude in ((g, 1.0), (2 * g, 0.4)):
        up = _upsample_matrix(k, octave)
        field += amplitude * np.einsum("ia,nab,jb->nij", up, rng.normal(size=(n, octave, octave)), up)
    field += 0.1 * rng.normal(size=(n, k, k))
    field -= field.mean(axis=(1, 2), keepdims=True)
    return field / field.std(axis=(1, 2), keepdims=True)


def _draw_roads(rng: np.random.Generator, types: np.ndarray) -> None:
    """Draws 0-3 roads per map in place: polylines between two border cells through a random waypoint."""
    n, k, _ = types.shape
    road = TERRAIN_NAMES.index("road")

    def border_cell():
        side, pos = int(rng.integers(4)), int(rng.integers(k))
        return [(0, pos), (k - 1, pos), (pos, 0), (pos, k - 1)][side]

    for m in range(n):
        for _ in range(int(rng.choice(4, p=[0.15, 0.4, 0.3, 0.15]))):
            points = [border_cell(), tuple(int(v) for v in rng.integers(k, size=2)), border_cell()]
            for (r0, c0), (r1, c1) in zip(points[:-1], points[1:]):
                steps = max(abs(r1 - r0), abs(c1 - c0)) + 1
                rows = np.rint(np.linspace(r0, r1, steps)).astype(int)
                cols = np.rint(np.linspace(c0, c1, steps)).astype(int)
                types[m, rows, cols] = road


def generate_terrain(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``[n, size, size]`` int terrain ids (indices into :data:`TERRAIN_NAMES`)."""
    ids = {name: i for i, name in enumerate(TERRAIN_NAMES)}
    elevation = _smooth_field(rng, n, size)
    moisture = _smooth_field(rng, n, size)
    heat = _smooth_field(rng, n, size)

    def threshold(centre, spread):
        return (centre + spread * rng.uniform(-1, 1, size=(n, 1, 1))).astype(np.float64)

    water, stone, snow = threshold(-0.9, 0.4), threshold(0.9, 0.3), threshold(1.6, 0.3)
    forest, dirt = threshold(0.5, 0.4), threshold(-0.6, 0.3)
    lava = np.where(rng.uniform(size=(n, 1, 1)) < 0.5, threshold(1.5, 0.3), np.inf)
    types = np.full([n, size, size], ids["grass"])
    types = np.where(moisture > forest, ids["forest"], np.where(moisture < dirt, ids["dirt"], types))
    types = np.where(elevation > stone, ids["stone"], types)
    types = np.where(elevation > snow, ids["snow"], types)
    types = np.where((heat > lava) & (elevation >= water), ids["lava"], types)
    types = np.where(elevation < water, ids["water"], types)
    _draw_roads(rng, types)
    return types


def render_maps(rng: np.random.Generator, types: np.ndarray, atlas: np.ndarray) -> np.ndarray:
    """``[n, 8k, 8k, 3]`` uint8 maps: each vertex drawn as a random variant of its terrain's tile."""
    n, k, _ = types.shape
    variants = rng.integers(atlas.shape[1], size=types.shape)
    tiles = atlas[types, variants]  # [n, k, k, 8, 8, 3]
    return tiles.transpose(0, 1, 3, 2, 4, 5).reshape(n, k * TILE, k * TILE, 3)


__all__ = ["generate_terrain", "render_maps"]
