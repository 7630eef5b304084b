"""How many Globe TSP labels the true capital coordinates reproduce through each model distance (issue 9).

Puts the true capitals of the default offline datasets (built on first use) on the unit sphere, computes the model's
distances between them (``identity_tf.tasks.globe_tsp.sphere_distances``, "arc" and "chord") and solves the TSP on
them: the share of exact label tours (and edges) reproduced is the cap of a model using that distance.

    python benchmarks/globe_distance_cap.py --save      # writes benchmarks/results/globe_distance_cap.json
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _results
import numpy as np

NAME = "globe_distance_cap"


def unit_vectors(gps: np.ndarray) -> np.ndarray:
    """(lon, lat) in degrees [..., 2] -> unit-sphere points [..., 3]."""
    lon, lat = np.radians(gps[..., 0]), np.radians(gps[..., 1])
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10])
    _results.add_output_arguments(parser, NAME)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    from identity_tf import solvers
    from identity_tf.datasets import globe_tsp
    from identity_tf.tasks.globe_tsp import sphere_distances

    rows = []
    for k in args.k:
        globe_tsp.build(k)
        data = globe_tsp.load(k)
        for split in ("train", "test"):
            indices, labels = getattr(data, f"{split}_indices"), getattr(data, f"{split}_tours")
            points = unit_vectors(data.gps[indices]).astype(np.float32)  # [N, k, 3]
            for kind in ("arc", "chord"):
                tours = solvers.TSP()(sphere_distances(points, kind)).numpy()
                row = {
                    "k": k,
                    "split": split,
                    "distance": kind,
                    "examples": int(len(labels)),
                    "exact_tours": float(np.mean(np.all(tours == labels, axis=(1, 2)))),
                    "edges": float(np.mean(np.sum(tours * labels, axis=(1, 2)) / (2 * k))),
                }
                rows.append(row)
                print(row, flush=True)
    _results.write(_results.output_path(args, NAME), {"rows": rows})


if __name__ == "__main__":
    main()
