"""Benchmark of the graph-matching solver: ILS (vectorised local search) vs MILP (HiGHS, exact) on keypoint-like
instances, time per instance and optimality gap.

Usage::

    python benchmarks/bench_graph_matching.py --repeats 3          # -> benchmarks/results/local/ (git-ignored)
    python benchmarks/bench_graph_matching.py --repeats 3 --save   # -> benchmarks/results/graph_matching.json

Instances: ``n`` random points in the unit square, a hidden permutation, the second graph's points jittered by
0.03; both graphs are Delaunay triangulations with both directions of every edge (as BB-GM builds them).

* ``trained``: costs of a trained network, from the noisy ground truth: ``unary = -(x* + 0.5 N(0, 1))``,
  ``pairwise = -0.5 (z* + 0.5 N(0, 1))`` (``z*`` the edge matching of ``x*``; BB-GM's costs are minus the
  affinities, pairwise halved because each edge is counted in both directions).
* ``early``: costs of an untrained network, near-random: ``unary ~ N(0, 1)``, ``pairwise ~ 0.5 N(0, 1)``.

ILS solves a batch of ``--batch`` instances in one vectorised call (``GraphMatching.solve_batch``, numpy, no
TensorFlow); its time is the best of ``--repeats`` calls divided by the batch size, wall clock and CPU. MILP
solves the first ``--milp-instances`` of them one at a time (one thread) with ``--time-limit`` seconds each; its
optimum (when HiGHS proves it) is the reference of the gaps: ``(f - f*) / |f*|`` over the instances MILP proved.
The machine's load average is recorded: other processes slow every number here.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import _results
import numpy as np
import scipy
import scipy.optimize
import scipy.spatial

from identity_tf.solvers import _qap_milp
from identity_tf.solvers.graph_matching import GraphMatching

NAME = "graph_matching"
SIZES = (10, 15, 20, 30)
KINDS = ("trained", "early")


def delaunay_edges(points: np.ndarray) -> np.ndarray:
    """Both directions of every Delaunay edge, ``[E, 2]``."""
    edges = set()
    for simplex in scipy.spatial.Delaunay(points).simplices:
        for a in range(3):
            i, k = int(simplex[a]), int(simplex[(a + 1) % 3])
            edges |= {(i, k), (k, i)}
    return np.array(sorted(edges), dtype=np.int64)


def instances(batch: int, n: int, kind: str, seed: int) -> tuple[np.ndarray, ...]:
    """A padded batch ``(unary, pairwise, edges1, edges2)`` of keypoint-like instances (module docstring)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(batch):
        points = rng.random((n, 2))
        perm = rng.permutation(n)  # node i of graph 1 <-> node perm[i] of graph 2
        points2 = np.empty_like(points)
        points2[perm] = points + 0.03 * rng.normal(size=points.shape)
        edges1, edges2 = delaunay_edges(points), delaunay_edges(points2)
        if kind == "early":
            unary, pairwise = rng.normal(size=(n, n)), 0.5 * rng.normal(size=(len(edges1), len(edges2)))
        else:
            truth = np.zeros((n, n))
            truth[np.arange(n), perm] = 1
            # [E1, E2]: edge (i, k) onto (perm i, perm k)
            edge_truth = (perm[edges1[:, 0], None] == edges2[None, :, 0]) & (
                perm[edges1[:, 1], None] == edges2[None, :, 1]
            )
            unary = -(truth + 0.5 * rng.normal(size=(n, n)))
            pairwise = -0.5 * (edge_truth + 0.5 * rng.normal(size=edge_truth.shape))
        rows.append((unary, pairwise, edges1, edges2))
    E1, E2 = max(len(r[2]) for r in rows), max(len(r[3]) for r in rows)
    unary = np.stack([r[0] for r in rows])
    pairwise = np.zeros((batch, E1, E2))
    edges1, edges2 = -np.ones((batch, E1, 2), np.int64), -np.ones((batch, E2, 2), np.int64)
    for b, (_, p, e1, e2) in enumerate(rows):
        pairwise[b, : len(e1), : len(e2)] = p
        edges1[b, : len(e1)], edges2[b, : len(e2)] = e1, e2
    return unary, pairwise, edges1, edges2


def objectives(inputs: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
    """``<unary, x> + <pairwise, z(x)>`` per instance."""
    unary, pairwise, edges1, edges2 = inputs
    b = np.arange(len(x))[:, None, None]
    e1, e2 = np.maximum(edges1, 0), np.maximum(edges2, 0)
    z = x[b, e1[:, :, None, 0], e2[:, None, :, 0]] * x[b, e1[:, :, None, 1], e2[:, None, :, 1]]
    z *= (edges1[:, :, None, 0] >= 0) & (edges2[:, None, :, 0] >= 0)
    return (unary * x).sum((1, 2)) + (pairwise * z).sum((1, 2))


def hungarian(unary: np.ndarray) -> np.ndarray:
    x = np.zeros(unary.shape)
    for b, costs in enumerate(unary):
        rows, cols = scipy.optimize.linear_sum_assignment(costs)
        x[b, rows, cols] = 1.0
    return x


def bench_ils(inputs, repeats: int, num_kicks: int) -> tuple[np.ndarray, float, float]:
    """``(x, wall ms per instance, CPU ms per instance)``, best of ``repeats`` calls after a warm-up."""
    solver = GraphMatching(method="ils", num_kicks=num_kicks, time_limit=None)
    x, _ = solver.solve_batch(*inputs)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        solver.solve_batch(*inputs)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    batch = len(inputs[0])
    return x, min(walls) / batch * 1e3, min(cpus) / batch * 1e3


def bench_milp(inputs, count: int, time_limit: float) -> tuple[np.ndarray, list[float], list[bool]]:
    """MILP on the first ``count`` instances, one at a time: ``(x, ms per instance, proved optimal)``."""
    solver = GraphMatching(method="milp", time_limit=time_limit, num_workers=1)
    xs, times, proved = [], [], []
    for b in range(count):
        one = tuple(a[b : b + 1] for a in inputs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            x, _ = solver.solve_batch(*one)
            times.append((time.perf_counter() - start) * 1e3)
        proved.append(not any(issubclass(w.category, _qap_milp.TimeLimitWarning) for w in caught))
        xs.append(x[0])
    return np.stack(xs), times, proved


def gap_stats(values: np.ndarray, reference: np.ndarray) -> dict:
    gaps = (values - reference) / np.abs(reference)
    return {
        "mean_percent": float(gaps.mean() * 100) if len(gaps) else None,
        "max_percent": float(gaps.max() * 100) if len(gaps) else None,
        "optimal_fraction": float(np.mean(gaps <= 1e-9)) if len(gaps) else None,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed ILS calls per measurement (after a warm-up)")
    parser.add_argument("--batch", type=int, default=32, help="instances per ILS call")
    parser.add_argument("--milp-instances", type=int, default=6, help="instances solved by MILP per row")
    parser.add_argument("--time-limit", type=float, default=10.0, help="HiGHS seconds per instance")
    parser.add_argument("--num-kicks", type=int, default=20, help="ILS kicks (the solver's default: 20)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    _results.add_output_arguments(parser, NAME)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    out = _results.output_path(args, NAME)
    load_before = os.getloadavg()
    rows = []
    header = (
        f"{'costs':8} {'n':>3} {'E':>4} {'ILS ms/inst':>11} {'(cpu)':>6} {'MILP ms/inst':>12} {'proved':>6} "
        f"{'ILS gap % mean/max':>19} {'ILS opt':>7} {'Hungarian gap %':>15}"
    )
    print(header)
    for kind in KINDS:
        for n in args.sizes:
            inputs = instances(args.batch, n, kind, seed=1000 * n + len(kind))
            x_ils, ils_ms, ils_cpu = bench_ils(inputs, args.repeats, args.num_kicks)
            count = min(args.milp_instances, args.batch)
            x_milp, milp_ms, proved = bench_milp(inputs, count, args.time_limit)
            f_ils = objectives(inputs, x_ils)
            f_milp = objectives(tuple(a[:count] for a in inputs), x_milp)
            f_hungarian = objectives(inputs, hungarian(inputs[0]))
            proved = np.array(proved)
            reference = f_milp[proved]
            row = {
                "costs": kind,
                "n": n,
                "batch": args.batch,
                "directed_edges_per_graph": float((inputs[2][..., 0] >= 0).sum(axis=1).mean()),
                "ils_ms_per_instance": ils_ms,
                "ils_cpu_ms_per_instance": ils_cpu,
                "milp_ms_per_instance": milp_ms,
                "milp_proved_optimal": int(proved.sum()),
                "milp_instances": count,
                "ils_gap_vs_proved_optimum": gap_stats(f_ils[:count][proved], reference),
                "hungarian_gap_vs_proved_optimum": gap_stats(f_hungarian[:count][proved], reference),
                # where HiGHS hit the limit: ILS's value relative to HiGHS's incumbent (negative: ILS is better)
                "ils_vs_milp_incumbent_unproved_percent": [
                    float((a - b) / abs(b) * 100) for a, b in zip(f_ils[:count][~proved], f_milp[~proved])
                ],
                "ils_never_worse_than_hungarian": bool(np.all(f_ils <= f_hungarian + 1e-9)),
            }
            rows.append(row)
            gap = row["ils_gap_vs_proved_optimum"]
            gap_text = "n/a" if gap["mean_percent"] is None else f"{gap['mean_percent']:.2f}/{gap['max_percent']:.2f}"
            opt_text = "n/a" if gap["optimal_fraction"] is None else f"{gap['optimal_fraction']:.0%}"
            hung = row["hungarian_gap_vs_proved_optimum"]["mean_percent"]
            print(
                f"{kind:8} {n:3d} {row['directed_edges_per_graph']:4.0f} {ils_ms:11.2f} {ils_cpu:6.2f} "
                f"{np.mean(milp_ms):12.0f} {int(proved.sum()):>3}/{count:<2} {gap_text:>19} {opt_text:>7} "
                f"{'n/a' if hung is None else f'{hung:.1f}':>15}",
                flush=True,
            )

    result = {
        "benchmark": NAME,
        "repeats": args.repeats,
        "batch": args.batch,
        "num_kicks": args.num_kicks,
        "milp_time_limit_s": args.time_limit,
        "target": "ILS <= 3 ms per instance at n <= 20 with gap 0 on trained-like costs (LPMP ~ 3 ms)",
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "rows": rows,
    }
    print(f"\nload average before/after: {load_before} / {os.getloadavg()}")
    _results.write(out, result)


if __name__ == "__main__":
    main()
