"""The diagnostics in tools/: their arithmetic, checked by hand."""

import importlib.util
import math
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_globe_tsp_errors_enumerates_tours_and_gaps():
    errors = _load("globe_tsp_errors")
    assert [len(errors.all_tours(k)) for k in (4, 5, 6)] == [3, 12, 60]  # (k - 1)! / 2
    tours5 = {tuple(t) for t in errors.all_tours(5)}
    assert all(tuple([0, *reversed(t[1:])]) not in tours5 for t in tours5)  # one direction each
    # A 1 x 2 rectangle: the perimeter 6, the two crossing tours 2 + 2 sqrt(5) and 4 + 2 sqrt(5).
    corners = np.array([[0, 0], [2, 0], [2, 1], [0, 1]], float)
    d = np.linalg.norm(corners[:, None] - corners[None], axis=-1)[None]
    np.testing.assert_allclose(errors.second_best_gaps(d), [(2 + 2 * math.sqrt(5) - 6) / 6])
    # Unit vectors of (lon, lat): (0, 0) -> x, (90, 0) -> y, (0, 90) -> z.
    np.testing.assert_allclose(errors.sphere_points(np.array([[0.0, 0], [90, 0], [0, 90]])), np.eye(3), atol=1e-12)
