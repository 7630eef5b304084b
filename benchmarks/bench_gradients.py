"""Backward cost of each gradient method relative to the forward pass.

For each solver (TopK, ShortestPath, TSP(dp)) and gradient method, times the median wall time of a forward pass
and of a forward + backward step (``tf.GradientTape``) in a ``tf.function`` (XLA where the solver allows it),
then reports the backward's share: Identity should add almost nothing, BB one more solve, I-MLE / perturbed
``num_samples`` solves. Prints a table and writes JSON.

    python benchmarks/bench_gradients.py --repeats 30          # -> benchmarks/results/local/ (git-ignored)
    python benchmarks/bench_gradients.py --repeats 30 --save   # -> benchmarks/results/gradients.json
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import _results  # noqa: E402
import identity_tf as itf  # noqa: E402


def median_ms(fn, arg, repeats):
    fn(arg)  # trace / compile
    fn(arg)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(arg)
        tf.nest.map_structure(lambda t: t.numpy(), out)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def make_step(method, solver, upstream):
    def step(c):
        with tf.GradientTape() as tape:
            tape.watch(c)
            solution = method(solver, c, seed=tf.constant([0, 1]))
            loss = tf.reduce_sum(solution * upstream)
        # return the solution too: otherwise XLA prunes Identity's forward solve (its gradient does not use it)
        return solution, tape.gradient(loss, c)

    return step


def cases(rng):
    d = rng.uniform(1, 10, size=(50, 10, 10)).astype(np.float32)
    d = d + d.transpose(0, 2, 1)
    return {
        "TopK(k=10) [100, 400]": (itf.solvers.TopK(k=10), rng.normal(size=(100, 400)).astype(np.float32)),
        "ShortestPath 70x12x12": (itf.solvers.ShortestPath(), rng.uniform(0.1, 5, (70, 12, 12)).astype(np.float32)),
        "TSP(dp) 50x10x10": (itf.solvers.TSP(method="dp"), d),
    }


NAME = "gradients"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    _results.add_output_arguments(parser, NAME)
    return parser.parse_args(argv)


def main():
    args = parse_args()
    out = _results.output_path(args, NAME)
    rng = np.random.default_rng(0)
    methods = {
        "identity": itf.gradients.Identity(),
        "blackbox": itf.gradients.Blackbox(lam=20.0),
        "imle(S=1)": itf.gradients.IMLE(lam=10.0, noise=itf.noise.Gumbel(0.1)),
        "perturbed(S=10)": itf.gradients.Perturbed(sigma=0.1, num_samples=10),
    }
    rows = []
    for case, (solver, costs) in cases(rng).items():
        costs = tf.constant(costs)
        upstream = tf.constant(rng.normal(size=solver(costs).shape).astype(np.float32))
        jit = solver.xla
        forward = tf.function(solver.__call__, jit_compile=jit)
        forward_ms = median_ms(forward, costs, args.repeats)
        for name, method in methods.items():
            step = make_step(method, solver, upstream)
            step_ms = median_ms(tf.function(step, jit_compile=jit), costs, args.repeats)
            rows.append(
                {
                    "case": case,
                    "method": name,
                    "xla": jit,
                    "forward_ms": forward_ms,
                    "step_ms": step_ms,
                    "step_over_forward": step_ms / forward_ms,
                }
            )
    print(f"{'case':28s} {'method':16s} {'forward ms':>10s} {'fwd+bwd ms':>10s} {'ratio':>7s}")
    for r in rows:
        print(
            f"{r['case']:28s} {r['method']:16s} {r['forward_ms']:10.3f} {r['step_ms']:10.3f} "
            f"{r['step_over_forward']:7.2f}"
        )
    _results.write(out, {"repeats": args.repeats, "results": rows})


if __name__ == "__main__":
    main()
