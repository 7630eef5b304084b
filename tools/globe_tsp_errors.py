"""Where a trained Globe TSP model goes wrong: near-tied tours, and how far its globe is from the true one.

For a finished run directory (``model.keras`` and ``config.yaml``) this tool

* predicts the tours of the training and test examples and counts the exact ones (the task's ``tour_accuracy``);
* measures every wrong test tour by its excess length on the *true* great-circle distances,
  ``(L(predicted) - L(label)) / L(label)``: a tiny excess means the label had a near-tied rival;
* for ``k <= 8``, enumerates all ``(k - 1)! / 2`` tours of each test example and bins the test accuracy by the
  relative gap between the best and the second-best tour;
* aligns the model's 100 predicted capitals with the true ones by the best orthogonal map (Procrustes: distances do
  not see rotations or reflections) and reports the angular error per country in km;
* for ``k <= 8``, calibrates that error: it moves every true capital by exactly ``X`` km in a random direction and
  counts the test tours that the moved globe still gets exactly right (no model involved), for several ``X``. So
  "the model's capitals are off by a median Y km" can be read against "a globe off by Y km everywhere gets Z %".

Usage::

    python tools/globe_tsp_errors.py RUN_DIR [--result results/globe_tsp/diagnostics/<name>.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from scipy.linalg import orthogonal_procrustes  # noqa: E402

import identity_tf  # noqa: E402, F401  (registers the serializable layers)
from identity_tf import train  # noqa: E402
from identity_tf.datasets.globe_tsp.geometry import EARTH_RADIUS_KM, great_circle_distances  # noqa: E402
from identity_tf.datasets.globe_tsp.pipeline import split_arrays  # noqa: E402
from identity_tf.tasks import registry  # noqa: E402

GAP_BINS = (0.0, 1e-4, 1e-3, 1e-2, np.inf)
CALIBRATION_KM = (0.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)


def all_tours(k: int) -> np.ndarray:
    """Every tour of ``k`` cities once (start at 0, one direction): ``[(k-1)!/2, k]``."""
    rest = [p for p in itertools.permutations(range(1, k)) if p[0] < p[-1]]
    return np.array([(0, *p) for p in rest])


def tour_lengths(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(tours [T, k], lengths [N, T])``: every tour of ``all_tours`` and its length in each ``[N, k, k]`` instance."""
    tours = all_tours(distances.shape[-1])
    return tours, distances[:, tours, np.roll(tours, -1, axis=1)].sum(-1)


def second_best_gaps(distances: np.ndarray) -> np.ndarray:
    """``[N]`` relative gap between the shortest and the second-shortest tour of each ``[N, k, k]`` instance."""
    _, lengths = tour_lengths(distances)
    lengths.sort(axis=1)
    return (lengths[:, 1] - lengths[:, 0]) / lengths[:, 0]


def sphere_points(gps: np.ndarray) -> np.ndarray:
    """``[C, 3]`` unit vectors of (longitude, latitude) degrees."""
    lon, lat = np.radians(gps[:, 0]), np.radians(gps[:, 1])
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def move_points(points: np.ndarray, distance_km: float, rng: np.random.Generator) -> np.ndarray:
    """``[C, 3]`` unit vectors, each moved along the sphere by exactly ``distance_km`` in a uniformly random direction."""
    tangent = rng.standard_normal(points.shape)
    tangent -= np.sum(tangent * points, -1, keepdims=True) * points  # project onto the tangent plane
    tangent /= np.linalg.norm(tangent, axis=-1, keepdims=True)
    angle = distance_km / EARTH_RADIUS_KM
    return np.cos(angle) * points + np.sin(angle) * tangent


def arc_distances(points: np.ndarray) -> np.ndarray:
    """``[C, C]`` great-circle angles between unit vectors."""
    return np.arccos(np.clip(points @ points.T, -1.0, 1.0))


def best_tour_adjacency(distances: np.ndarray) -> np.ndarray:
    """``[N, k, k]`` 0/1 adjacency of the shortest tour of each ``[N, k, k]`` instance, by enumeration."""
    n, k = distances.shape[0], distances.shape[-1]
    tours, lengths = tour_lengths(distances)
    best = tours[np.argmin(lengths, axis=1)]  # [N, k]
    adjacency = np.zeros((n, k, k), np.uint8)
    rows = np.arange(n)[:, None]
    adjacency[rows, best, np.roll(best, -1, axis=1)] = 1
    adjacency[rows, np.roll(best, -1, axis=1), best] = 1
    return adjacency


def calibration(truth: np.ndarray, indices: np.ndarray, tours: np.ndarray, draws: int = 5, seed: int = 0) -> list:
    """Exact-tour accuracy of the true globe with every capital moved by ``X`` km (``CALIBRATION_KM``), the mean
    and the range over ``draws`` random moves."""
    rng = np.random.default_rng(seed)
    rows = []
    for km in CALIBRATION_KM:
        accuracies = []
        for _ in range(draws if km > 0 else 1):
            d = arc_distances(move_points(truth, km, rng))
            predicted = best_tour_adjacency(d[indices[:, :, None], indices[:, None, :]])
            accuracies.append(float(np.all(predicted == tours, axis=(1, 2)).mean()))
        rows.append(
            {
                "error_km": km,
                "tour_accuracy": float(np.mean(accuracies)),
                "min": min(accuracies),
                "max": max(accuracies),
            }
        )
    return rows


def predict_tours(model, data, indices: np.ndarray, batch: int = 200) -> np.ndarray:
    flags = data.flags.astype("float32") / 255.0
    out = [model.predict(flags[indices[i : i + batch]], verbose=0) for i in range(0, len(indices), batch)]
    return np.concatenate(out).round().astype(np.uint8)


def analyse(run_dir: pathlib.Path) -> dict:
    config = train.load_config(run_dir / "config.yaml")
    data = registry.get("globe_tsp").datasets(config).data  # the run's examples (its max_train, max_test)
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    true_d = great_circle_distances(data.gps)
    result: dict = {"run": str(run_dir), "k": data.k}
    for split in ("train", "test"):
        indices, tours = split_arrays(data, split, config.data.val_fraction)
        predicted = predict_tours(model, data, indices)
        right = np.all(predicted == tours, axis=(1, 2))
        result[f"{split}_tour_accuracy"] = float(right.mean())
        if split == "test":
            test_indices, test_tours = indices, tours
            sub = true_d[indices[:, :, None], indices[:, None, :]]  # [N, k, k]
            excess = ((sub * predicted).sum((1, 2)) - (sub * tours).sum((1, 2))) / (sub * tours).sum((1, 2))
            wrong = excess[~right]
            result["test_wrong"] = int((~right).sum())
            result["test_wrong_excess_quantiles"] = {
                q: float(np.quantile(wrong, float(q))) if len(wrong) else None for q in ("0.1", "0.5", "0.9")
            }
            if data.k <= 8:
                gaps = second_best_gaps(sub)
                bins = []
                for lo, hi in zip(GAP_BINS[:-1], GAP_BINS[1:]):
                    mask = (gaps >= lo) & (gaps < hi)
                    bins.append(
                        {
                            "gap_from": lo,
                            "gap_to": None if np.isinf(hi) else hi,
                            "examples": int(mask.sum()),
                            "tour_accuracy": float(right[mask].mean()) if mask.any() else None,
                        }
                    )
                result["test_accuracy_by_second_best_gap"] = bins
    # The learned globe: every country's predicted point, aligned with the truth by an orthogonal map.
    flags = data.flags.astype("float32")[:, None] / 255.0  # [C, 1, H, W, 3]: one country per "example"
    points = model.points(np.repeat(flags, data.k, axis=1)).numpy()[:, 0]  # [C, 3]
    truth = sphere_points(data.gps)
    rotation, _ = orthogonal_procrustes(points, truth)
    aligned = points @ rotation
    cos = np.clip(np.sum(aligned * truth, -1) / np.linalg.norm(aligned, axis=-1), -1.0, 1.0)
    error_km = EARTH_RADIUS_KM * np.arccos(cos)
    result["capital_error_km"] = {
        "median": float(np.median(error_km)),
        "p90": float(np.quantile(error_km, 0.9)),
        "max": float(error_km.max()),
        "worst": [str(data.names[i]) for i in np.argsort(error_km)[::-1][:5]],
    }
    if data.k <= 8:
        result["test_accuracy_of_the_true_globe_moved_by_km"] = calibration(truth, test_indices, test_tours)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=pathlib.Path, help="a finished Globe TSP run directory")
    parser.add_argument("--result", type=pathlib.Path, help="write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if not (args.run_dir / "model.keras").is_file():
        parser.error(f"run_dir: expected a finished run with model.keras. Received: {args.run_dir}")
    result = analyse(args.run_dir)
    text = json.dumps(result, indent=1)
    print(text)
    if args.result:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
