"""Benchmark of the TSP solvers: Held-Karp DP (XLA / graph), CP-SAT and MILP (1 vs 2 workers), TF overhead.

Usage::

    python benchmarks/bench_tsp.py --repeats 5          # -> benchmarks/results/local/ (git-ignored)
    python benchmarks/bench_tsp.py --repeats 5 --save   # -> benchmarks/results/tsp.json

All timings are wall-clock milliseconds per call on a batch of Euclidean instances (points uniform in the unit
square), after a warm-up call: the DP is the mean of ``max(repeats, 20)`` calls, the host methods the best of
``--repeats`` calls (1 and 2 workers alternating), the overhead a median of many tiny calls.
Note: scipy's HiGHS wrapper holds the GIL, so MILP does not speed up with more threads.
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

import _results
import numpy as np
import tensorflow as tf

from identity_tf.solvers.tsp import TSP

BATCH = 50


def euclidean(batch: int, k: int, seed: int = 0) -> np.ndarray:
    points = np.random.default_rng(seed).random((batch, k, 2))
    # [B, k, 1, 2] - [B, 1, k, 2] -> [B, k, k]
    return np.linalg.norm(points[:, :, None] - points[:, None], axis=-1).astype(np.float32)


def time_ms(fn, repeats: int) -> float:
    """Mean wall time of ``fn()`` in ms after one warm-up call (``fn`` must block until done)."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def bench_dp(repeats: int) -> list[dict]:
    rows = []
    for k in (5, 10, 12):
        costs = tf.constant(euclidean(BATCH, k))
        for mode, jit in (("xla", True), ("graph", False)):
            fn = tf.function(TSP(method="dp"), jit_compile=jit)
            ms = time_ms(lambda fn=fn, costs=costs: fn(costs).numpy(), max(repeats, 20))  # ms-scale: more calls
            rows.append({"method": "dp", "mode": mode, "k": k, "batch": BATCH, "ms_per_batch": ms})
    return rows


def bench_host(repeats: int) -> list[dict]:
    """Host methods with 1 and 2 worker threads; the two alternate and the best of ``repeats`` calls is kept
    (robust to load from other processes, which the speed-up would otherwise mostly measure)."""
    rows = []
    for method in ("cp_sat", "milp"):
        for k in (10, 20):
            costs = euclidean(BATCH, k, seed=k)
            solvers = {workers: TSP(method=method, num_workers=workers) for workers in (1, 2)}
            times = {workers: [] for workers in solvers}
            solvers[1].solve_batch(costs[:2])  # warm-up (imports, first model build)
            for _ in range(repeats):
                for workers, solver in solvers.items():
                    start = time.perf_counter()
                    solver.solve_batch(costs)
                    times[workers].append((time.perf_counter() - start) * 1e3)
            ms = {workers: min(t) for workers, t in times.items()}
            rows.append(
                {
                    "method": method,
                    "k": k,
                    "batch": BATCH,
                    "ms_per_batch_1_worker": ms[1],
                    "ms_per_batch_2_workers": ms[2],
                    "speedup_2_workers": ms[1] / ms[2],
                }
            )
    return rows


def bench_overhead(repeats: int) -> dict:
    """``solve_batch`` on numpy vs the same solver called in a ``tf.function`` (numpy_function round trip).

    Tiny instances keep the solve short; the two calls alternate and the medians are compared, so that load
    from other processes hits both alike.
    """
    k, batch = 4, 2
    costs = euclidean(batch, k)
    tensor = tf.constant(costs)
    solver = TSP(method="cp_sat", num_workers=1)
    fn = tf.function(solver)
    fn(tensor).numpy()  # trace
    direct, wrapped = [], []
    for _ in range(max(200, 50 * repeats)):
        start = time.perf_counter()
        solver.solve_batch(costs)
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        fn(tensor).numpy()
        wrapped.append(time.perf_counter() - start)
    direct_ms, wrapped_ms = float(np.median(direct)) * 1e3, float(np.median(wrapped)) * 1e3
    return {
        "method": "cp_sat",
        "k": k,
        "batch": batch,
        "solve_batch_ms": direct_ms,
        "tf_function_ms": wrapped_ms,
        "overhead_ms": wrapped_ms - direct_ms,
    }


NAME = "tsp"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (after a warm-up)")
    _results.add_output_arguments(parser, NAME)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    out = _results.output_path(args, NAME)

    dp = bench_dp(args.repeats)
    print(f"{'method':8} {'mode':6} {'k':>3} {'batch':>5} {'ms/batch':>10}")
    for row in dp:
        print(f"{row['method']:8} {row['mode']:6} {row['k']:3d} {row['batch']:5d} {row['ms_per_batch']:10.3f}")

    host = bench_host(args.repeats)
    print(f"\n{'method':8} {'k':>3} {'batch':>5} {'1 worker ms':>12} {'2 workers ms':>13} {'speed-up':>9}")
    for row in host:
        print(
            f"{row['method']:8} {row['k']:3d} {row['batch']:5d} {row['ms_per_batch_1_worker']:12.1f} "
            f"{row['ms_per_batch_2_workers']:13.1f} {row['speedup_2_workers']:8.2f}x"
        )

    overhead = bench_overhead(args.repeats)
    print(
        f"\nhost overhead ({overhead['method']}, k={overhead['k']}, batch={overhead['batch']}): "
        f"solve_batch {overhead['solve_batch_ms']:.3f} ms, tf.function {overhead['tf_function_ms']:.3f} ms, "
        f"overhead {overhead['overhead_ms']:.3f} ms/call"
    )

    result = {
        "benchmark": "tsp",
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "dp": dp,
        "host": host,
        "overhead": overhead,
    }
    _results.write(out, result)


if __name__ == "__main__":
    main()
