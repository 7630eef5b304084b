"""Full train steps of the paper-task models with and without whole-step XLA: the data behind ``execution.py``.

Usage::

    python benchmarks/bench_train_step.py --rounds 10 --save

Each model is built and compiled exactly as the trainer builds it (``train.load_config`` on the task's config,
``train.build_and_compile`` with ``train.jit_compile`` set to true or false), on random inputs of the right
shape (no dataset is built; L2X gets zero word vectors). After two warm-up steps (tracing, XLA compilation) the
two variants alternate, ``--steps`` steps each per round, so that load from other processes hits both alike;
the median over ``--rounds`` rounds is reported, with the forward pass (``predict_on_batch``) timed the same way.
The machine's load average is recorded: other processes share the CPU.

A third variant, ``solver_xla``, is the graph-mode step with the model's pure-TF solver compiled on its own
(``execution.compile_solvers``); ``--no-solver-xla`` skips it. ``--models`` picks a subset.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import _results  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from identity_tf import execution, train  # noqa: E402
from identity_tf.solvers.tsp import TSP  # noqa: E402
from identity_tf.tasks import l2x, registry  # noqa: E402
from identity_tf.tasks.registry import TaskData  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def warcraft_batch(config, rng):
    size, b = config.data.size, config.train.batch_size
    maps = rng.normal(size=(b, 8 * size, 8 * size, 3)).astype("float32")
    path = (rng.random((b, size, size)) < 0.2).astype("float32")
    weights = rng.uniform(0.8, 9.2, size=(b, size, size)).astype("float32")
    return maps, np.stack([path, weights], axis=-1)  # target [B, k, k, 2]


def globe_batch(config, rng):
    k, b = config.data.k, config.train.batch_size
    flags = rng.random((b, k, 20, 40, 3)).astype("float32")
    points = rng.normal(size=(b, k, 3))
    d = np.linalg.norm(points[:, :, None] - points[:, None], axis=-1).astype("float32")
    return flags, TSP(method="dp").solve_batch(d)  # a valid tour per example


def dvae_batch(config, rng):
    x = rng.random((config.train.batch_size, 784)).astype("float32")
    return x, x


def l2x_batch(config, rng):
    b, c = config.train.batch_size, config.model
    ids = rng.integers(1, c.vocab_size, size=(b, c.max_len)).astype("int32")
    return ids, rng.random((b, 1)).astype("float32")


MODELS = {
    "warcraft12": ("configs/warcraft/warcraft12_identity.yaml", warcraft_batch),
    "globe_tsp10": ("configs/globe_tsp/tsp10_identity_noise0.2.yaml", globe_batch),
    "dvae": ("configs/dvae/identity_none.yaml", dvae_batch),
    "dvae_gumbel": ("configs/dvae/gumbel_st.yaml", dvae_batch),  # dense layers, no Gamma noise
    "l2x": ("configs/l2x/identity_none_k10.yaml", l2x_batch),
}


def build(name: str, jit: bool, x, solvers_alone: bool = False):
    path, _ = MODELS[name]
    config = train.load_config(REPO / path, overrides={"train.jit_compile": jit})
    task = registry.get(config.task)
    data = None
    if config.task == "l2x":  # zero word vectors instead of building the reviews dataset
        data = TaskData({}, types.SimpleNamespace(embeddings=np.zeros([config.model.vocab_size, l2x.EMBED_DIM])))
    keras.utils.set_random_seed(0)
    model = train.build_and_compile(config, task, tf.distribute.get_strategy(), data, sample=x)
    assert model.jit_compile is jit, (name, jit, model.jit_compile)
    if solvers_alone:
        execution.compile_solvers(model)
    return model, config


def timed(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps * 1e3


def bench_model(name: str, rounds: int, steps: int, with_solver_xla: bool) -> dict:
    _, make_batch = MODELS[name]
    config = train.load_config(REPO / MODELS[name][0])
    x, y = make_batch(config, np.random.default_rng(0))
    x, y = tf.constant(x), tf.constant(y)
    variants = {}
    row = {"model": name, "config": MODELS[name][0], "batch_size": config.train.batch_size}
    # no_xla: graph-mode step; xla: whole-step XLA; solver_xla: graph-mode step, the pure-TF solver compiled alone
    specs = [("no_xla", False, False), ("xla", True, False)] + (
        [("solver_xla", False, True)] if with_solver_xla else []
    )
    for tag, jit, alone in specs:
        model, _ = build(name, jit, x, solvers_alone=alone)
        start = time.perf_counter()
        model.train_on_batch(x, y)
        first = time.perf_counter() - start
        model.train_on_batch(x, y)
        model.predict_on_batch(x)
        model.predict_on_batch(x)
        variants[tag] = model
        row[f"{tag}_first_step_s"] = first
    times = {f"{tag}_{what}": [] for tag in variants for what in ("step", "forward")}
    for _ in range(rounds):
        for tag, model in variants.items():
            times[f"{tag}_step"].append(timed(lambda model=model: model.train_on_batch(x, y), steps))
            times[f"{tag}_forward"].append(timed(lambda model=model: model.predict_on_batch(x), steps))
    for key, values in times.items():
        row[f"{key}_ms"] = statistics.median(values)
    row["xla_over_no_xla_step"] = row["xla_step_ms"] / row["no_xla_step_ms"]
    if "solver_xla" in variants:
        row["solver_xla_over_no_xla_step"] = row["solver_xla_step_ms"] / row["no_xla_step_ms"]
    auto = execution.plan("auto", variants["no_xla"], tf.distribute.get_strategy())
    row["auto_policy"] = {"jit_compile": auto.jit_compile, "reason": auto.reason}
    return row


NAME = "execution_policy"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--no-solver-xla", action="store_true", help="skip the solver-compiled-alone variant")
    _results.add_output_arguments(parser, NAME)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    out = _results.output_path(args, NAME)

    load_before = os.getloadavg()
    rows = []
    for name in args.models:
        row = bench_model(name, args.rounds, args.steps, not args.no_solver_xla)
        rows.append(row)
        print(
            f"{name:12} B={row['batch_size']:3d}: step no-XLA {row['no_xla_step_ms']:7.1f} ms, XLA "
            f"{row['xla_step_ms']:7.1f} ms (x{row['xla_over_no_xla_step']:.2f}); forward {row['no_xla_forward_ms']:.1f}"
            f" / {row['xla_forward_ms']:.1f} ms; auto -> jit_compile={row['auto_policy']['jit_compile']}",
            flush=True,
        )
    result = {
        "benchmark": "train_step",
        "device": "CPU",
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "rows": rows,
    }
    _results.write(out, result)


if __name__ == "__main__":
    main()
