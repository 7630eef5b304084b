"""Ranking for retrieval-sized databases: implementations of the ranks, graph mode vs XLA, on this machine.

Times ``[queries, database]`` rankings at 128 x 128 (a batch ranked against itself) and 128 x 512 (a batch
against itself plus a 3-batch memory, RaMBO's setup) for:

* ``double_argsort``: argsort of the negated scores, argsort of that order (the solver's path outside XLA);
* ``argsort_scatter``: one stable argsort, inverse permutation by a scatter;
* ``packed_sort_scatter``: one sort of ``(score, position)`` packed into an int64 key, inverse by a scatter
  (the solver's path under XLA on a CPU, ``identity_tf.solvers.ranking.sort_and_scatter_ranks``);
* ``pairwise_count``: ``1 + #(j before i)`` from all pairwise comparisons, O(n^2) but vectorised;
* ``Ranking()``: the solver as users call it (picks its path at trace time);
* ``RecallLoss step``: value + gradient of the recall loss (Identity and Blackbox) on the same scores.

Each implementation runs in a ``tf.function`` (graph) and with ``jit_compile=True`` (XLA). Repeats are
interleaved across implementations so that load from other processes hits all of them alike; the medians and
minima are reported with the load average. All implementations are checked to return identical ranks (ties and
signed zeros included) before timing.

    python benchmarks/bench_ranking.py --repeats 40 --save   # updates benchmarks/results/ranking.json
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _results  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import identity_tf as itf  # noqa: E402
from identity_tf.solvers.ranking import sort_and_scatter_ranks  # noqa: E402


def canonical_negated(scores):
    return tf.where(scores == 0, tf.zeros_like(scores), -scores)


def double_argsort(scores):
    order = tf.argsort(canonical_negated(scores), axis=-1, stable=True)
    return tf.argsort(order, axis=-1, stable=True) + 1


def argsort_scatter(scores):
    order = tf.argsort(canonical_negated(scores), axis=-1, stable=True)  # [Q, n]
    rows, n = tf.shape(order)[0], tf.shape(order)[1]
    targets = tf.reshape(order + n * tf.range(rows)[:, None], [-1, 1])
    updates = tf.reshape(tf.broadcast_to(tf.range(1, n + 1), tf.shape(order)), [-1])
    return tf.reshape(tf.scatter_nd(targets, updates, [rows * n]), tf.shape(order))


def packed_sort_scatter(scores):
    return sort_and_scatter_ranks(canonical_negated(scores))


def pairwise_count(scores):
    n = scores.shape[-1]
    other, this = scores[:, None, :], scores[:, :, None]  # [Q, 1, n] (j), [Q, n, 1] (i)
    earlier = tf.constant(np.tril(np.ones((n, n), bool), -1))  # [i, j]: j < i
    before = tf.logical_or(other > this, tf.logical_and(other == this, earlier))
    return 1 + tf.reduce_sum(tf.cast(before, tf.int32), axis=-1)


def ranking_solver(scores):
    return itf.solvers.Ranking(validate_args=False)(scores)


def recall_step(gradient):
    loss = itf.losses.RecallLoss(gradient=gradient)

    def step(scores, relevance):
        with tf.GradientTape() as tape:
            tape.watch(scores)
            value = loss(relevance, scores)
        return value, tape.gradient(value, scores)

    return step


def test_scores(rng, shape):
    scores = rng.normal(size=shape).astype(np.float32)
    scores[:, ::5] = np.round(scores[:, ::5])  # ties
    scores[:, :4] = [0.0, -0.0, 0.0, -0.0]  # signed zeros
    return scores


NAME = "ranking"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=40)
    _results.add_output_arguments(parser, NAME)
    return parser.parse_args(argv)


def main():
    args = parse_args()
    rng = np.random.default_rng(0)
    implementations = {
        "double_argsort": double_argsort,
        "argsort_scatter": argsort_scatter,
        "packed_sort_scatter": packed_sort_scatter,
        "pairwise_count": pairwise_count,
        "Ranking()": ranking_solver,
    }
    load_start = os.getloadavg()
    rows = []
    for shape in [(128, 128), (128, 512)]:
        scores = tf.constant(test_scores(rng, shape))
        relevance = tf.constant((rng.uniform(size=shape) < 0.05).astype(np.float32))
        reference = double_argsort(scores).numpy()
        jobs = {}
        for name, fn in implementations.items():
            for mode in ("graph", "xla"):
                compiled = tf.function(fn, jit_compile=mode == "xla")
                ranks = compiled(scores).numpy()
                if not np.array_equal(ranks, reference):
                    raise AssertionError(f"{name} ({mode}) differs from the double argsort at {shape}")
                jobs[(name, mode)] = (compiled, (scores,))
        for label, gradient in (("RecallLoss step, identity", "identity"), ("RecallLoss step, blackbox", "blackbox")):
            for mode in ("graph", "xla"):
                jobs[(label, mode)] = (
                    tf.function(recall_step(gradient), jit_compile=mode == "xla"),
                    (scores, relevance),
                )
        times = {key: [] for key in jobs}
        for fn, inputs in jobs.values():  # warm up (trace, compile)
            tf.nest.map_structure(lambda t: t.numpy(), fn(*inputs))
        for _ in range(args.repeats):
            for key, (fn, inputs) in jobs.items():
                start = time.perf_counter()
                tf.nest.map_structure(lambda t: t.numpy(), fn(*inputs))
                times[key].append(time.perf_counter() - start)
        for (name, mode), values in times.items():
            rows.append(
                {
                    "shape": list(shape),
                    "implementation": name,
                    "mode": mode,
                    "median_ms": 1e3 * float(np.median(values)),
                    "min_ms": 1e3 * float(np.min(values)),
                }
            )
    load_end = os.getloadavg()

    print(f"{'shape':>10}  {'implementation':<28} {'graph ms':>9} {'xla ms':>9}   (median; min in JSON)")
    by_key = {(tuple(r["shape"]), r["implementation"], r["mode"]): r["median_ms"] for r in rows}
    for shape in [(128, 128), (128, 512)]:
        for name in [*implementations, "RecallLoss step, identity", "RecallLoss step, blackbox"]:
            graph, xla = by_key[(shape, name, "graph")], by_key[(shape, name, "xla")]
            print(f"{shape[0]:>4}x{shape[1]:<5}  {name:<28} {graph:9.2f} {xla:9.2f}")
    print(f"load average {load_start} -> {load_end} on {os.cpu_count()} cores")
    payload = {
        "device": "CPU",
        "cpu_count": os.cpu_count(),
        "loadavg_start": list(load_start),
        "loadavg_end": list(load_end),
        "repeats": args.repeats,
        "identical_ranks": True,
        "results": rows,
    }
    _results.write(_results.output_path(args, NAME), payload)


if __name__ == "__main__":
    main()
