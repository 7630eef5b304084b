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


def test_globe_tsp_errors_calibration_moves_capitals_by_the_given_distance():
    errors = _load("globe_tsp_errors")
    rng = np.random.default_rng(0)
    points = errors.sphere_points(np.array([[0.0, 0], [90, 0], [10, 45], [-120, -30]]))
    moved = errors.move_points(points, 100.0, rng)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=-1), 1.0, atol=1e-12)  # still on the sphere
    angle = np.arccos(np.clip(np.sum(moved * points, -1), -1, 1))
    np.testing.assert_allclose(angle * errors.EARTH_RADIUS_KM, 100.0, rtol=1e-6)  # exactly 100 km each
    # The 1 x 2 rectangle's shortest tour is its perimeter 0-1-2-3.
    corners = np.array([[0, 0], [2, 0], [2, 1], [0, 1]], float)
    d = np.linalg.norm(corners[:, None] - corners[None], axis=-1)[None]
    perimeter = np.array([[[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]], np.uint8)
    np.testing.assert_array_equal(errors.best_tour_adjacency(d), perimeter)
    # Labels by brute force on the true globe: moved by 0 km every tour is right; moved by 200 km some are wrong, and
    # the accuracy only falls from 5 km to 200 km (30 random capitals, 200 TSP(5) examples, seeded).
    gps = np.stack([rng.uniform(-180, 180, 30), rng.uniform(-60, 60, 30)], axis=-1)
    truth = errors.sphere_points(gps)
    indices = np.argsort(rng.random((200, 30)), axis=1)[:, :5]
    d = errors.arc_distances(truth)
    labels = errors.best_tour_adjacency(d[indices[:, :, None], indices[:, None, :]])
    rows = {r["error_km"]: r for r in errors.calibration(truth, indices, labels)}
    assert rows[0.0]["tour_accuracy"] == 1.0
    assert rows[200.0]["tour_accuracy"] < 1.0
    assert [r["tour_accuracy"] for r in rows.values()][-1] <= rows[5.0]["tour_accuracy"]
