"""Where ``TSP(method="auto")`` should switch from the Held-Karp DP to an exact host method.

Usage::

    python benchmarks/bench_tsp_auto.py --save

For batches of B = 50 and B = 256 random Euclidean instances (points uniform in the unit square) and
k = 10 .. 15 cities, times the DP compiled alone with XLA and in graph mode (as inside a train step without
whole-step XLA), and the exact host methods CP-SAT and HiGHS with one thread per core. Every timing is the best
of ``--repeats`` calls after a warm-up call (robust to load from other processes; the load average is recorded).
The crossover is the largest k at which the slower DP mode still beats the faster exact host method.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import _results  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from identity_tf.solvers.tsp import TSP  # noqa: E402


def euclidean(batch: int, k: int, seed: int) -> np.ndarray:
    points = np.random.default_rng(seed).random((batch, k, 2))
    # [B, k, 1, 2] - [B, 1, k, 2] -> [B, k, k]
    return np.linalg.norm(points[:, :, None] - points[:, None], axis=-1).astype(np.float32)


def best_ms(fn, repeats: int) -> float:
    fn()  # warm-up: tracing, compilation, imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


NAME = "tsp_auto"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[50, 256])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 11, 12, 13, 14, 15])
    _results.add_output_arguments(parser, NAME)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    out = _results.output_path(args, NAME)

    load_before = os.getloadavg()
    rows = []
    print(f"{'B':>4} {'k':>3} {'dp xla':>9} {'dp graph':>9} {'cp_sat':>9} {'milp':>9}  (ms per batch)")
    for batch in args.batches:
        for k in args.ks:
            costs = euclidean(batch, k, seed=1000 * batch + k)
            tensor = tf.constant(costs)
            row = {"batch": batch, "k": k}
            for mode, jit in (("dp_xla", True), ("dp_graph", False)):
                fn = tf.function(TSP(method="dp"), jit_compile=jit)
                row[f"{mode}_ms"] = best_ms(lambda fn=fn: fn(tensor).numpy(), args.repeats)
            lengths = {}
            for method in ("cp_sat", "milp"):
                solver = TSP(method=method)  # one thread per core
                row[f"{method}_ms"] = best_ms(lambda solver=solver: solver.solve_batch(costs), args.repeats)
                lengths[method] = (costs * solver.solve_batch(costs)).sum(axis=(1, 2)) / 2
            dp_lengths = (costs * TSP(method="dp").solve_batch(costs)).sum(axis=(1, 2)) / 2
            row["exact_agree"] = bool(all(np.allclose(lengths[m], dp_lengths, rtol=1e-5) for m in ("cp_sat", "milp")))
            rows.append(row)
            print(
                f"{batch:4d} {k:3d} {row['dp_xla_ms']:9.1f} {row['dp_graph_ms']:9.1f} {row['cp_sat_ms']:9.1f} "
                f"{row['milp_ms']:9.1f}  agree={row['exact_agree']}",
                flush=True,
            )

    crossover = {}
    for batch in args.batches:
        faster = [
            r["k"]
            for r in rows
            if r["batch"] == batch and max(r["dp_xla_ms"], r["dp_graph_ms"]) < min(r["cp_sat_ms"], r["milp_ms"])
        ]
        crossover[str(batch)] = max(faster) if faster else None
    print(f"largest k where the DP (slower mode) beats the best exact host method: {crossover}")

    result = {
        "benchmark": "tsp_auto",
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "rows": rows,
        "dp_faster_up_to_k": crossover,
    }
    _results.write(out, result)


if __name__ == "__main__":
    main()
