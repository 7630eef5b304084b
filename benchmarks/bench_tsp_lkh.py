"""LKH-3 (``TSP(method="lkh")``, elkai) against the exact TSP methods: time per instance and optimality rate.

Usage::

    python benchmarks/bench_tsp_lkh.py --instances 1000 --save

Instances: random points on the unit sphere (uniform directions), with great-circle distances (``arccos`` of the
dot product, as in Globe TSP) or chord (Euclidean) distances. For every ``k`` the same instances are solved by

* ``lkh``: ``TSP(method="lkh")`` in-process (1 worker) and over one worker process per core;
* ``cp_sat``: the exact reference, one thread per core (its per-instance time is measured with 1 thread on the
  first ``--timed`` instances);
* ``milp`` (HiGHS) on the first ``--timed`` instances, and ``dp`` (Held-Karp, XLA) on all of them for k <= 15;
* elkai's own API on raw float distances (``elkai.DistanceMatrix(d).solve_tsp(runs=1)``) on the first
  ``--timed`` instances, to show why ``method="lkh"`` scales distances to integers.

A tour counts as optimal when its length is within ``k * range / 1e6`` of the exact optimum (the bound of the
integer rounding that CP-SAT and LKH both use). Times are wall clock per instance; the machine's load average
is recorded (other processes share the CPU).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import _results  # noqa: E402
import elkai  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from identity_tf.solvers.tsp import TSP  # noqa: E402


def sphere_distances(n: int, k: int, kind: str, seed: int) -> np.ndarray:
    """``[n, k, k]`` great-circle or chord distances between uniform random points of the unit sphere."""
    points = np.random.default_rng(seed).normal(size=(n, k, 3))
    points /= np.linalg.norm(points, axis=-1, keepdims=True)
    cosine = np.clip(np.einsum("bid,bjd->bij", points, points), -1.0, 1.0)  # [n, k, k]
    d = np.arccos(cosine) if kind == "great_circle" else np.sqrt(np.maximum(2.0 - 2.0 * cosine, 0.0))
    d[:, np.arange(k), np.arange(k)] = 0.0
    return d


def lengths(d: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    return (d * adjacency).sum(axis=(1, 2)) / 2


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def order_length(d: np.ndarray, order) -> float:
    order = np.asarray(order[:-1] if len(order) == len(d) + 1 else order)
    return float(d[order, np.roll(order, -1)].sum())


def bench(k: int, kind: str, n: int, n_timed: int, seed: int) -> dict:
    d = sphere_distances(n, k, kind, seed)
    off = ~np.eye(k, dtype=bool)
    tolerance = k * (d[:, off].max(axis=1) - d[:, off].min(axis=1)) / 1e6  # [n]
    row = {"k": k, "distances": kind, "instances": n, "timed_instances": n_timed}

    exact, seconds = timed(lambda: TSP(method="cp_sat").solve_batch(d))
    optimum = lengths(d, exact)
    row["cp_sat_all_cores_ms_per_instance"] = seconds / n * 1e3
    _, seconds = timed(lambda: TSP(method="cp_sat", num_workers=1).solve_batch(d[:n_timed]))
    row["cp_sat_1_thread_ms_per_instance"] = seconds / n_timed * 1e3
    milp, seconds = timed(lambda: TSP(method="milp", num_workers=1).solve_batch(d[:n_timed]))
    row["milp_1_thread_ms_per_instance"] = seconds / n_timed * 1e3
    row["milp_agrees_with_cp_sat"] = int(
        np.sum(np.abs(lengths(d[:n_timed], milp) - optimum[:n_timed]) <= tolerance[:n_timed])
    )
    if k <= 15:
        dp = np.concatenate([TSP(method="dp").solve_batch(chunk) for chunk in np.array_split(d, max(1, n // 100))])
        row["dp_agrees_with_cp_sat"] = int(np.sum(np.abs(lengths(d, dp) - optimum) <= tolerance))

    TSP(method="lkh").solve_batch(d[:8])  # start the worker processes
    lkh_one, seconds = timed(lambda: TSP(method="lkh", num_workers=1).solve_batch(d))
    row["lkh_1_worker_ms_per_instance"] = seconds / n * 1e3
    lkh_all, seconds = timed(lambda: TSP(method="lkh").solve_batch(d))
    row["lkh_all_cores_ms_per_instance"] = seconds / n * 1e3
    row["lkh_workers_same_tours"] = bool(np.array_equal(lkh_one, lkh_all))
    gap = lengths(d, lkh_one) / optimum - 1.0
    row["lkh_optimal"] = int(np.sum(lengths(d, lkh_one) - optimum <= tolerance))
    row["lkh_optimality_rate"] = row["lkh_optimal"] / n
    row["lkh_mean_gap"] = float(gap.mean())
    row["lkh_max_gap"] = float(gap.max())

    raw = []
    start = time.perf_counter()
    for instance in d[:n_timed]:
        raw.append(order_length(instance, elkai.DistanceMatrix(instance.tolist()).solve_tsp(runs=1)))
    row["elkai_raw_float_ms_per_instance"] = (time.perf_counter() - start) / n_timed * 1e3
    raw_gap = np.array(raw) / optimum[:n_timed] - 1.0
    row["elkai_raw_float_optimal"] = int(np.sum(np.array(raw) - optimum[:n_timed] <= tolerance[:n_timed]))
    row["elkai_raw_float_mean_gap"] = float(raw_gap.mean())
    return row


NAME = "tsp_lkh"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=1000, help="random instances per (k, distances)")
    parser.add_argument("--timed", type=int, default=100, help="instances for the 1-thread / MILP / raw timings")
    parser.add_argument("--ks", type=int, nargs="+", default=[15, 20, 30])
    parser.add_argument("--distances", nargs="+", default=["great_circle", "chord"], choices=["great_circle", "chord"])
    _results.add_output_arguments(parser, NAME)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    out = _results.output_path(args, NAME)

    load_before = os.getloadavg()
    rows = []
    for kind in args.distances:
        for k in args.ks:
            row = bench(k, kind, args.instances, min(args.timed, args.instances), seed=k + 100 * len(kind))
            rows.append(row)
            print(
                f"{kind:12} k={k:2d}: LKH optimal {row['lkh_optimal']}/{row['instances']} "
                f"(mean gap {row['lkh_mean_gap']:.2e}), {row['lkh_1_worker_ms_per_instance']:.2f} ms/instance "
                f"(1 worker), {row['lkh_all_cores_ms_per_instance']:.2f} (all cores); CP-SAT "
                f"{row['cp_sat_1_thread_ms_per_instance']:.2f} ms (1 thread), HiGHS "
                f"{row['milp_1_thread_ms_per_instance']:.2f} ms; raw-float elkai optimal "
                f"{row['elkai_raw_float_optimal']}/{row['timed_instances']} "
                f"(mean gap {row['elkai_raw_float_mean_gap']:.1%})",
                flush=True,
            )
    result = {
        "benchmark": "tsp_lkh",
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "elkai": importlib.metadata.version("elkai"),
        "rows": rows,
    }
    _results.write(out, result)


if __name__ == "__main__":
    main()
