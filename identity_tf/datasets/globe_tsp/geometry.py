"""Geometry of Globe TSP: great-circle distances between capitals and the lengths of tours.

The labels of the data set are optimal tours on the great-circle (haversine) distance on a sphere of radius
:data:`EARTH_RADIUS_KM`; :func:`tour_lengths` measures a tour given as a 0/1 adjacency matrix.

Example:
>>> paris, london = (2.3522, 48.8566), (-0.1276, 51.5072)  # (lon, lat)
>>> round(float(great_circle_distances(np.array([paris, london]))[0, 1]))
344
"""

from __future__ import annotations

import numpy as np

#: Mean Earth radius (IUGG), km.
EARTH_RADIUS_KM = 6371.0088


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


__all__ = ["EARTH_RADIUS_KM", "great_circle_distances", "tour_lengths"]
