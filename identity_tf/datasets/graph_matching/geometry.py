"""Geometry of the keypoint pairs: Delaunay graphs, Harris corners, random affine + smooth warps.

Coordinates are ``(x, y)`` pixels, ``x`` along the image width; pixel ``(r, c)`` has its centre at ``(c, r)``.

Example:
>>> import numpy as np
>>> delaunay_edges(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])).tolist()
[[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.ndimage
import scipy.spatial


def delaunay_edges(points) -> np.ndarray:
    """The directed edges ``[E, 2]`` (int32, sorted) of the Delaunay triangulation of ``points [n, 2]``.

    Both orientations of every triangle side are listed (BB-GM's graphs). Two points give the edge in both
    directions, one point none; degenerate (collinear) point sets are triangulated with Qhull's joggle (``QJ``),
    and three points on a line (which Qhull refuses) are joined along the line.

    Example:
    >>> delaunay_edges(np.array([[0.0, 0.0], [2.0, 0.0]])).tolist()
    [[0, 1], [1, 0]]
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"Argument `points` must have shape [n, 2]. Received: points.shape={points.shape}")
    n = len(points)
    if n < 3:
        return np.array([[0, 1], [1, 0]] if n == 2 else np.zeros((0, 2)), np.int32).reshape(-1, 2)
    try:
        simplices = scipy.spatial.Delaunay(points).simplices
    except scipy.spatial.QhullError:
        try:
            simplices = scipy.spatial.Delaunay(points, qhull_options="QJ").simplices
        except scipy.spatial.QhullError:  # all on one line (or one point): the path along the line
            axis = np.linalg.svd(points - points.mean(axis=0))[2][0]
            order = np.argsort(points @ axis, kind="stable")
            path = [(int(a), int(b)) for a, b in zip(order[:-1], order[1:])]
            return np.array(sorted(path + [(b, a) for a, b in path]), np.int32).reshape(-1, 2)
    edges = set()
    for simplex in simplices:
        for a in range(3):
            i, k = int(simplex[a]), int(simplex[(a + 1) % 3])
            edges |= {(i, k), (k, i)}
    return np.array(sorted(edges), np.int32).reshape(-1, 2)


def harris_corners(gray, num: int, min_distance: int, border: int, sigma: float = 1.5, k: float = 0.05):
    """The ``num`` strongest Harris corners ``[<=num, 2]`` (x, y) of a 2-D image, at least ``min_distance`` apart.

    Harris response ``det(M) - k * trace(M)^2`` of the Gaussian-smoothed (``sigma``) structure tensor of Sobel
    gradients; local maxima (in a ``2 * min_distance + 1`` window) more than ``border`` pixels from the edges,
    strongest first, greedily thinned to ``min_distance``.

    Example:
    >>> image = np.zeros((40, 40)); image[10:30, 10:30] = 1.0
    >>> sorted(map(tuple, harris_corners(image, 4, 5, 3).round().astype(int).tolist()))
    [(10, 10), (10, 29), (29, 10), (29, 29)]
    """
    gray = np.asarray(gray, np.float64)
    gx, gy = scipy.ndimage.sobel(gray, axis=1), scipy.ndimage.sobel(gray, axis=0)
    xx = scipy.ndimage.gaussian_filter(gx * gx, sigma)
    yy = scipy.ndimage.gaussian_filter(gy * gy, sigma)
    xy = scipy.ndimage.gaussian_filter(gx * gy, sigma)
    response = xx * yy - xy * xy - k * (xx + yy) ** 2
    peaks = response == scipy.ndimage.maximum_filter(response, size=2 * min_distance + 1)
    peaks &= response > 0
    peaks[:border], peaks[-border:], peaks[:, :border], peaks[:, -border:] = False, False, False, False
    rows, cols = np.nonzero(peaks)
    order = np.argsort(-response[rows, cols], kind="stable")
    chosen: list[tuple[float, float]] = []
    for r, c in zip(rows[order], cols[order]):
        if all((c - x) ** 2 + (r - y) ** 2 >= min_distance**2 for x, y in chosen):
            chosen.append((float(c), float(r)))
            if len(chosen) == num:
                break
    return np.array(chosen, np.float64).reshape(-1, 2)


@dataclasses.dataclass(frozen=True)
class Warp:
    """A random image warp: the output pixel ``o`` shows the source point ``G(o) = A^-1 (o - t) + d(o)``.

    ``A`` (2x2) and ``t`` are an affine map, ``d`` a smooth displacement: a sum of ``len(amplitudes)`` sinusoids
    ``amplitudes[j] * sin(<frequencies[j], o> + phases[j])`` per coordinate. The keypoints move forward:
    :meth:`forward` solves ``G(o) = p`` by the fixed-point iteration ``o <- A (p - d(o)) + t``, which contracts
    when ``|A| * Lip(d) < 1`` (at most about 0.7 for the warps of :meth:`random`).

    Example:
    >>> warp = Warp.random(np.random.default_rng(0), size=64)
    >>> p = np.array([[20.0, 30.0]])
    >>> bool(np.abs(warp.inverse(warp.forward(p)) - p).max() < 1e-9)
    True
    """

    matrix: np.ndarray  # A [2, 2]
    offset: np.ndarray  # t [2]
    amplitudes: np.ndarray  # [J, 2]: per sinusoid, the displacement amplitude of x and y
    frequencies: np.ndarray  # [J, 2]
    phases: np.ndarray  # [J, 2]

    @classmethod
    def random(
        cls,
        rng,
        size: int,
        rotation: float = 20.0,
        scale: tuple[float, float] = (0.85, 1.15),
        shear: float = 0.1,
        shift: float = 0.06,
        smooth: float = 0.02,
        waves: int = 3,
    ) -> Warp:
        """A random warp of a ``size x size`` image around its centre: rotation up to ``rotation`` degrees, per-axis
        scale in ``scale``, shear up to ``shear``, shift up to ``shift * size``, smooth displacement of amplitude up
        to ``smooth * size`` with wavelengths of 0.7-2 image sizes."""
        angle = np.deg2rad(rng.uniform(-rotation, rotation))
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        matrix = rot @ np.array([[1.0, rng.uniform(-shear, shear)], [0.0, 1.0]]) @ np.diag(rng.uniform(*scale, size=2))
        centre = np.full(2, (size - 1) / 2.0)
        offset = centre - matrix @ centre + rng.uniform(-shift, shift, size=2) * size
        wavelengths = rng.uniform(0.7, 2.0, size=(waves, 2)) * size
        directions = rng.normal(size=(waves, 2))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        frequencies = 2 * np.pi * directions / wavelengths
        amplitudes = rng.uniform(-smooth, smooth, size=(waves, 2)) * size
        return cls(matrix, offset, amplitudes, frequencies, rng.uniform(0, 2 * np.pi, size=(waves, 2)))

    def displacement(self, points) -> np.ndarray:
        """``d(o)`` for points ``[..., 2]``."""
        points = np.asarray(points, np.float64)
        phase = points @ self.frequencies.T  # [..., J]
        return (np.sin(phase[..., None] + self.phases) * self.amplitudes).sum(axis=-2)

    def inverse(self, points) -> np.ndarray:
        """``G(o)``: the source point shown at output points ``[..., 2]``."""
        points = np.asarray(points, np.float64)
        return (points - self.offset) @ np.linalg.inv(self.matrix).T + self.displacement(points)

    def forward(self, points, iterations: int = 60) -> np.ndarray:
        """The output points ``o`` with ``G(o) = p`` for source points ``p [..., 2]``."""
        points = np.asarray(points, np.float64)
        out = points @ self.matrix.T + self.offset
        for _ in range(iterations):
            out = (points - self.displacement(out)) @ self.matrix.T + self.offset
        return out

    def apply(self, image, size: int) -> np.ndarray:
        """The warped ``size x size`` image (bilinear, edge pixels repeated) of ``image [H, W, C]`` float."""
        image = np.asarray(image, np.float64)
        rows, cols = np.mgrid[0:size, 0:size]
        source = self.inverse(np.stack([cols, rows], axis=-1).astype(np.float64))  # [size, size, 2] (x, y)
        coords = [source[..., 1], source[..., 0]]
        channels = [
            scipy.ndimage.map_coordinates(image[..., c], coords, order=1, mode="nearest") for c in range(image.shape[2])
        ]
        return np.stack(channels, axis=-1)


def bilinear(image, points) -> np.ndarray:
    """``image [H, W, C]`` sampled bilinearly at ``points [n, 2]`` (x, y): ``[n, C]`` (edge pixels repeated)."""
    image = np.asarray(image, np.float64)
    points = np.asarray(points, np.float64)
    coords = [points[:, 1], points[:, 0]]
    return np.stack(
        [scipy.ndimage.map_coordinates(image[..., c], coords, order=1, mode="nearest") for c in range(image.shape[2])],
        axis=-1,
    )


def resize(image, size: tuple[int, int]) -> np.ndarray:
    """``image [H, W, C]`` float resized to ``size = (height, width)`` by bilinear sampling of pixel centres."""
    image = np.asarray(image, np.float64)
    h, w = image.shape[:2]
    rows = (np.arange(size[0]) + 0.5) * h / size[0] - 0.5
    cols = (np.arange(size[1]) + 0.5) * w / size[1] - 0.5
    grid_r, grid_c = np.meshgrid(rows, cols, indexing="ij")
    return np.stack(
        [
            scipy.ndimage.map_coordinates(image[..., c], [grid_r, grid_c], order=1, mode="nearest")
            for c in range(image.shape[2])
        ],
        axis=-1,
    )


__all__ = ["Warp", "bilinear", "delaunay_edges", "harris_corners", "resize"]
