"""Benchmark of the batched XLA ShortestPath solver against scipy and a pure-Python Dijkstra.

Times the median per-batch wall time for 70 random maps of 30x30 and 12x12 (8-neighbourhood), verifies that the
XLA solver's path costs equal scipy's, prints a table and writes the results as JSON.

    python benchmarks/bench_shortest_path.py --repeats 50          # -> benchmarks/results/local/ (git-ignored)
    python benchmarks/bench_shortest_path.py --repeats 50 --save   # -> benchmarks/results/shortest_path.json
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import scipy.sparse  # noqa: E402
import scipy.sparse.csgraph  # noqa: E402
import tensorflow as tf  # noqa: E402

import _results  # noqa: E402
from identity_tf.solvers.shortest_path import ShortestPath  # noqa: E402

MOVES = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]


def grid_structure(h, w):
    """CSR pattern of the 8-neighbour grid: edge u -> v; returns (graph with unit data, target index of each edge)."""
    rows, cols = [], []
    for i, j in itertools.product(range(h), range(w)):
        for di, dj in MOVES:
            a, b = i + di, j + dj
            if 0 <= a < h and 0 <= b < w:
                rows.append(i * w + j)
                cols.append(a * w + b)
    graph = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(h * w, h * w))
    graph.sort_indices()
    return graph


def scipy_batch(costs, graph):
    """Per-map scipy Dijkstra on a prebuilt CSR graph (edge weight = cost of the head vertex), path by predecessors."""
    out = np.zeros_like(costs)
    for n, w in enumerate(costs):
        flat = w.reshape(-1).astype(np.float64)
        graph.data = flat[graph.indices] + 1e-300  # keep zero-cost edges (csgraph drops explicit zeros)
        _, pred = scipy.sparse.csgraph.dijkstra(graph, directed=True, indices=0, return_predecessors=True)
        path = out[n].reshape(-1)
        v = flat.size - 1
        while v >= 0:
            path[v] = 1.0
            v = pred[v]
    return out


def python_dijkstra(w):
    """Grid Dijkstra with heapq over vertex costs, as in the original Blackbox-Backprop code."""
    h, wd = w.shape
    dist = np.full((h, wd), np.inf)
    pred = {}
    dist[0, 0] = w[0, 0]
    heap = [(w[0, 0], 0, 0)]
    while heap:
        d, i, j = heapq.heappop(heap)
        if d > dist[i, j]:
            continue
        if (i, j) == (h - 1, wd - 1):
            break
        for di, dj in MOVES:
            a, b = i + di, j + dj
            if 0 <= a < h and 0 <= b < wd and d + w[a, b] < dist[a, b]:
                dist[a, b] = d + w[a, b]
                pred[(a, b)] = (i, j)
                heapq.heappush(heap, (dist[a, b], a, b))
    path = np.zeros((h, wd), np.float32)
    cell = (h - 1, wd - 1)
    while True:
        path[cell] = 1.0
        if cell == (0, 0):
            return path
        cell = pred[cell]


def median_ms(fn, repeats):
    fn()  # warm-up (tracing / compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


NAME = "shortest_path"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=70)
    _results.add_output_arguments(parser, NAME)
    return parser.parse_args(argv)


def main():
    args = parse_args()
    out = _results.output_path(args, NAME)

    solver = ShortestPath(neighbourhood=8)
    xla_fn = tf.function(solver, jit_compile=True)
    graph_fn = tf.function(solver)
    rng = np.random.default_rng(0)
    results = []
    for size in (30, 12):
        costs = rng.uniform(0.0, 10.0, (args.batch, size, size)).astype(np.float32)
        tensor = tf.constant(costs)
        csr = grid_structure(size, size)
        xla_paths = xla_fn(tensor).numpy()
        scipy_paths = scipy_batch(costs, csr)
        np.testing.assert_allclose((xla_paths * costs).sum((1, 2)), (scipy_paths * costs).sum((1, 2)), rtol=1e-5)
        np.testing.assert_allclose(
            (np.stack([python_dijkstra(c) for c in costs]) * costs).sum((1, 2)),
            (scipy_paths * costs).sum((1, 2)),
            rtol=1e-5,
        )
        timings = {
            "xla": median_ms(lambda: xla_fn(tensor).numpy(), args.repeats),
            "graph (no XLA)": median_ms(lambda: graph_fn(tensor).numpy(), args.repeats),
            "scipy dijkstra loop": median_ms(lambda: scipy_batch(costs, csr), args.repeats),
            "python heapq dijkstra": median_ms(lambda: [python_dijkstra(c) for c in costs], max(3, args.repeats // 5)),
        }
        print(f"\nbatch {args.batch} of {size}x{size} maps, 8-neighbourhood (costs of XLA == scipy: verified)")
        print(f"{'method':<24}{'ms/batch':>10}{'XLA speed-up':>14}")
        for method, ms in timings.items():
            speed = ms / timings["xla"]
            print(f"{method:<24}{ms:>10.2f}{speed:>13.1f}x")
            results.append(
                {"size": size, "batch": args.batch, "method": method, "ms_per_batch": ms, "time_vs_xla": speed}
            )
    _results.write(out, {"repeats": args.repeats, "results": results})


if __name__ == "__main__":
    main()
