"""One-shot GPU check: every paper task for one short epoch, solver timings, XLA x MirroredStrategy probe.

Run it through ``benchmarks/gpu_check.sh`` (which first checks that the interpreter has TensorFlow and the
other dependencies)::

    bash benchmarks/gpu_check.sh                       # on a GPU machine, under 8 minutes
    bash benchmarks/gpu_check.sh --allow-cpu --tiny    # anywhere: the same code at a tiny size, on CPU

Phases, each written to JSON as soon as it is done (``--out-dir``, default ``benchmarks/results``):

1. ``gpu_env.json``: device name (TensorFlow's device details, ``nvidia-smi``), Python / TensorFlow / Keras /
   CUDA / cuDNN versions. With no GPU visible it stops here with exit code 2, unless ``--allow-cpu``.
2. ``gpu_solvers.json``: ms per solve of ShortestPath 30x30 (B = 70), TSP dp k = 10 / 12 (B = 50), TopK(k = 10)
   and Ranking on [100, 400], compiled alone with XLA and in graph mode; ratios to the CPU numbers of
   ``benchmarks/results/{shortest_path,tsp,gradients}.json`` where the same case exists.
3. ``gpu_mirrored_xla.json``: a tiny Keras model with a solver layer fitted under MirroredStrategy over two
   devices (two GPUs, or two logical devices carved from one; two logical CPUs with ``--allow-cpu``) with
   ``jit_compile=True``: does XLA + MirroredStrategy work on this device (DESIGN.md section 8)?
4. ``gpu_train_step.json``: ``benchmarks/bench_train_step.py`` on this device (ms per full train step, XLA on
   and off, per task model), with ratios to ``benchmarks/results/execution_policy.json`` (CPU).
5. ``gpu_train.json``: ``identity-tf train <config> --quick --set train.epochs=1 --set data.max_train=...`` for
   every task x {default, mirrored} x jit_compile {true, false}; return code, wall time, the run's
   ``train_seconds`` and test metrics, the error tail of a failed run.

Exit code: 0 when every phase ran and every run succeeded; 2 without a GPU (and no ``--allow-cpu``); 1 when a
run or probe failed or the time budget (``--budget-s``) cut a phase short. The reason is printed last.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere without installing
RESULTS = REPO / "benchmarks" / "results"

TASKS = {
    "warcraft": "configs/warcraft/warcraft12_identity.yaml",
    "globe_tsp": "configs/globe_tsp/tsp10_identity_noise0.2.yaml",
    "dvae": "configs/dvae/identity_none.yaml",
    "l2x": "configs/l2x/identity_none_k10.yaml",
}
#: ``--set`` overrides of one short epoch (about 10 training steps; 2 with ``--tiny``).
SIZES = {
    "normal": {
        "warcraft": {"data.max_train": 700, "data.max_val": 140, "data.max_test": 140},
        "globe_tsp": {"data.max_train": 550, "data.max_test": 100},
        "dvae": {"data.max_train": 1000, "data.max_val": 200, "data.max_test": 200},
        "l2x": {"data.max_train": 400, "data.max_val": 80, "data.max_test": 80, "data.max_annotations": 40},
    },
    "tiny": {
        "warcraft": {"data.max_train": 140, "data.max_val": 70, "data.max_test": 70},
        "globe_tsp": {"data.max_train": 110, "data.max_test": 50},
        "dvae": {"data.max_train": 200, "data.max_val": 100, "data.max_test": 100},
        "l2x": {"data.max_train": 80, "data.max_val": 40, "data.max_test": 40, "data.max_annotations": 20},
    },
}
STRATEGIES = ("default", "mirrored")
JIT = ("true", "false")


# ------------------------------------------------------------------------------------------------- helpers
class Budget:
    """Wall-clock budget of the whole check."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def write(out_dir: pathlib.Path, name: str, payload: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / name).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"gpu_check: wrote {out_dir / name}", flush=True)


def read_json(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def ratio(value, reference):
    return None if value is None or not reference else value / reference


def child_env(data_dir: str | None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # concurrent runs share the GPU
    if data_dir:
        env["IDENTITY_TF_DATA_DIR"] = data_dir
    return env


# -------------------------------------------------------------------------------------------- 1. environment
def environment(allow_cpu: bool) -> dict:
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    build = tf.sysconfig.get_build_info()
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "built_with_cuda": tf.test.is_built_with_cuda(),
        "cuda_version": build.get("cuda_version"),
        "cudnn_version": build.get("cudnn_version"),
        "gpus": [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus],
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "nvidia_smi": _nvidia_smi(),
    }
    env["device"] = env["gpus"][0] if gpus else "CPU (--allow-cpu)" if allow_cpu else "none"
    return env


def _nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    result = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
    return (result.stdout or result.stderr).strip()


def no_gpu_message(env: dict) -> str:
    hints = []
    if not env["built_with_cuda"]:
        hints.append("this TensorFlow is built without CUDA (install the `tensorflow[and-cuda]` wheel into the venv)")
    if env["nvidia_smi"] is None:
        hints.append("nvidia-smi is not on PATH (no NVIDIA driver visible)")
    else:
        hints.append(f"nvidia-smi sees: {env['nvidia_smi']!r} (CUDA libraries missing or mismatched?)")
    return (
        "gpu_check: FAILED: no GPU is visible to TensorFlow (tf.config.list_physical_devices('GPU') == []); "
        + "; ".join(hints)
        + ". Pass --allow-cpu to run the check on CPU anyway."
    )


# ----------------------------------------------------------------------------------------------- 2. solvers
def _median_ms(fn, repeats: int) -> float:
    fn()
    fn()  # warm-up: tracing and compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def solvers(repeats: int, tiny: bool) -> list[dict]:
    import numpy as np
    import tensorflow as tf

    from identity_tf.solvers import Ranking, ShortestPath, TopK
    from identity_tf.solvers.tsp import TSP

    rng = np.random.default_rng(0)
    side = 8 if tiny else 30

    def euclidean(batch, k):
        p = rng.random((batch, k, 2))
        return np.linalg.norm(p[:, :, None] - p[:, None], axis=-1).astype("float32")

    cases = [
        ("ShortestPath", {"size": side, "batch": 70}, ShortestPath(), rng.uniform(0.1, 9, (70, side, side))),
        ("TSP dp", {"k": 10, "batch": 50}, TSP(method="dp"), euclidean(50, 10)),
        ("TSP dp", {"k": 12, "batch": 50}, TSP(method="dp"), euclidean(50, 8 if tiny else 12)),
        ("TopK", {"k": 10, "shape": [100, 400]}, TopK(k=10), rng.normal(size=(100, 400))),
        ("Ranking", {"shape": [100, 400]}, Ranking(), rng.normal(size=(100, 400))),
    ]
    rows = []
    for name, params, solver, costs in cases:
        if tiny and name == "TSP dp":
            params = {**params, "k": costs.shape[-1]}
        tensor = tf.constant(costs, tf.float32)
        for mode, jit in (("xla", True), ("graph", False)):
            fn = tf.function(solver, jit_compile=jit)
            ms = _median_ms(lambda fn=fn: fn(tensor).numpy(), repeats)
            rows.append({"solver": name, **params, "mode": mode, "ms_per_solve": ms})
    for row in rows:
        row["cpu_ms_per_solve"] = _cpu_solver_ms(row)
        row["cpu_over_this"] = ratio(row["cpu_ms_per_solve"], row["ms_per_solve"])
    return rows


def _cpu_solver_ms(row: dict) -> float | None:
    """The same case measured on this project's CPU machine (benchmarks/results), or None."""
    if row["solver"] == "ShortestPath":
        results = (read_json("shortest_path.json") or {}).get("results", [])
        method = "xla" if row["mode"] == "xla" else "graph (no XLA)"
        found = [
            r for r in results if r["size"] == row["size"] and r["batch"] == row["batch"] and r["method"] == method
        ]
        return found[0]["ms_per_batch"] if found else None
    if row["solver"] == "TSP dp":
        results = (read_json("tsp.json") or {}).get("dp", [])
        found = [r for r in results if r["k"] == row["k"] and r["batch"] == row["batch"] and r["mode"] == row["mode"]]
        return found[0]["ms_per_batch"] if found else None
    if row["solver"] == "TopK" and row["mode"] == "xla":
        results = (read_json("gradients.json") or {}).get("results", [])
        found = [r for r in results if r["case"] == "TopK(k=10) [100, 400]" and r["method"] == "identity"]
        return found[0]["forward_ms"] if found else None
    return None


# ------------------------------------------------------------------------------------ 3. XLA x Mirrored probe
PROBE = r"""
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, tensorflow as tf, keras
kind = sys.argv[1]
if kind == "GPU":
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) == 1:  # two logical GPUs carved from one (this process only)
        tf.config.set_logical_device_configuration(gpus[0], [tf.config.LogicalDeviceConfiguration(2048)] * 2)
    cross = None
else:
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    cross = tf.distribute.ReductionToOneDevice()
import identity_tf as itf
devices = [d.name for d in tf.config.list_logical_devices(kind)][:2]
strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=cross)
x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
y = (np.arange(64)[:, None] % 5 == np.arange(5)).astype("float32")
result = {"devices": devices, "replicas": strategy.num_replicas_in_sync}
for jit in (False, True):
    with strategy.scope():
        inputs = keras.Input((8,))
        out = itf.layers.SolverLayer(itf.solvers.TopK(k=1))(keras.layers.Dense(5)(inputs))
        model = keras.Model(inputs, out)
        model.compile(optimizer="adam", loss="mse", jit_compile=jit)
    try:
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        result[f"jit_{jit}"] = {"ok": True, "loss": [float(v) for v in history.history["loss"]]}
    except Exception as error:  # the probe reports any failure
        result[f"jit_{jit}"] = {"ok": False, "error": f"{type(error).__name__}: {str(error)[-1500:]}"}
print("PROBE_RESULT " + json.dumps(result))
"""


def mirrored_xla_probe(kind: str, timeout: float) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, kind],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(None),
        cwd=REPO,
        check=False,
    )
    for line in result.stdout.splitlines():
        if line.startswith("PROBE_RESULT "):
            return {"device_type": kind, **json.loads(line[len("PROBE_RESULT ") :])}
    return {"device_type": kind, "rc": result.returncode, "error": result.stderr[-3000:]}


# ------------------------------------------------------------------------------------------ 4. train steps
def train_steps(out_dir: pathlib.Path, tiny: bool, timeout: float, data_dir: str | None) -> dict:
    out = out_dir / "gpu_train_step.json"
    tiny_args = ["--rounds", "1", "--steps", "1", "--models", "dvae_gumbel", "--no-solver-xla"]
    args = ["--out", str(out)] + (tiny_args if tiny else ["--rounds", "3"])
    command = [sys.executable, str(REPO / "benchmarks" / "bench_train_step.py"), *args]
    start = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=child_env(data_dir), cwd=REPO, check=False
    )
    summary = {"command": " ".join(command[1:]), "rc": result.returncode, "wall_s": time.perf_counter() - start}
    if result.returncode != 0 or not out.is_file():
        return {**summary, "error": result.stderr[-3000:]}
    measured = json.loads(out.read_text())
    cpu = {row["model"]: row for row in (read_json("execution_policy.json") or {}).get("rows", [])}
    for row in measured["rows"]:
        reference = cpu.get(row["model"], {})
        for key in ("no_xla_step_ms", "xla_step_ms"):
            row[f"cpu_{key}"] = reference.get(key)
            row[f"cpu_over_this_{key[:-3]}"] = ratio(reference.get(key), row[key])
    out.write_text(json.dumps(measured, indent=2) + "\n")
    return summary


# -------------------------------------------------------------------------------------------- 5. train runs
def train_run(task: str, strategy: str, jit: str, size: str, work: pathlib.Path, budget: Budget, data_dir, extra):
    name = f"{task}_{strategy}_jit_{jit}"
    run_dir = work / name
    overrides = {"train.epochs": 1, "train.jit_compile": jit, **SIZES[size][task], **extra}
    command = [sys.executable, "-m", "identity_tf.cli", "train", TASKS[task], "--quick", "--quiet"]  # the CLI
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    command += ["--strategy", strategy, "--out", str(run_dir), "--overwrite"]
    row = {"task": task, "config": TASKS[task], "strategy": strategy, "jit_compile": jit, "overrides": overrides}
    timeout = budget.left()  # a queued run gets what is left when it starts
    if timeout < 20:
        return {**row, "rc": "skipped (time budget)", "wall_s": 0.0}
    start = time.perf_counter()
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=child_env(data_dir), cwd=REPO, check=False
        )
        row["rc"] = result.returncode
        tail = result.stderr[-2000:]
    except subprocess.TimeoutExpired as error:
        row["rc"] = "timeout"
        tail = (error.stderr or b"")[-2000:].decode(errors="replace") if isinstance(error.stderr, bytes) else ""
    row["wall_s"] = time.perf_counter() - start
    metrics_path = run_dir / "metrics.json"
    if row["rc"] == 0 and metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        row.update({key: metrics.get(key) for key in ("train_seconds", "replicas", "test")})
    else:
        row["error_tail"] = tail
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (tests the check on CPU)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (2 steps per run, small solver inputs)")
    parser.add_argument("--out-dir", default=str(RESULTS), help="where the gpu_*.json files go")
    parser.add_argument("--data-dir", default=None, help="IDENTITY_TF_DATA_DIR of the training runs")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--jit", nargs="+", default=list(JIT), choices=list(JIT))
    parser.add_argument("--skip", nargs="*", default=[], choices=["solvers", "probe", "train_step", "train"])
    parser.add_argument("--jobs", type=int, default=2, help="training runs at once (they share the GPU)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of the whole check")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per solver case")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra override of every training run"
    )
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.set)

    budget = Budget(args.budget_s)
    out_dir = pathlib.Path(args.out_dir)
    problems = []
    env = environment(args.allow_cpu)
    env["arguments"] = vars(args)
    write(out_dir, "gpu_env.json", env)
    if not env["gpus"] and not args.allow_cpu:
        print(no_gpu_message(env), file=sys.stderr)
        return 2
    print(f"gpu_check: device {env['device']}; TensorFlow {env['tensorflow']}, Keras {env['keras']}", flush=True)
    kind = "GPU" if env["gpus"] else "CPU"
    common = {"device": env["device"], "tensorflow": env["tensorflow"], "keras": env["keras"]}

    if "solvers" not in args.skip:
        rows = solvers(args.repeats if not args.tiny else 3, args.tiny)
        write(out_dir, "gpu_solvers.json", {**common, "rows": rows})

    if "probe" not in args.skip:
        probe = mirrored_xla_probe(kind, timeout=max(30.0, min(180.0, budget.left())))
        write(out_dir, "gpu_mirrored_xla.json", {**common, **probe})
        ok = probe.get("jit_False", {}).get("ok")
        print(
            f"gpu_check: MirroredStrategy over {probe.get('devices')}: no XLA ok={ok}, "
            f"XLA ok={probe.get('jit_True', {}).get('ok')}",
            flush=True,
        )
        if not ok:
            problems.append("MirroredStrategy without XLA failed in the probe (see gpu_mirrored_xla.json)")

    if "train_step" not in args.skip:
        if budget.left() < 60:
            problems.append("time budget: train-step benchmark skipped")
        else:
            summary = train_steps(out_dir, args.tiny, timeout=budget.left() * 0.45, data_dir=args.data_dir)
            print(f"gpu_check: train steps rc={summary['rc']} in {summary['wall_s']:.0f} s", flush=True)
            if summary["rc"] != 0:
                problems.append(f"train-step benchmark failed: {summary.get('error', '')[-300:]}")
                write(out_dir, "gpu_train_step.json", {**common, **summary})

    if "train" not in args.skip:
        combos = [(t, s, j) for t in args.tasks for s in args.strategies for j in args.jit]
        work = pathlib.Path(tempfile.mkdtemp(prefix="gpu_check_runs_"))
        size = "tiny" if args.tiny else "normal"
        runs = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(train_run, *combo, size, work, budget, args.data_dir, extra) for combo in combos]
            for future in concurrent.futures.as_completed(futures):
                row = future.result()
                runs.append(row)
                print(
                    f"gpu_check: train {row['task']:9} {row['strategy']:8} jit={row['jit_compile']:5} "
                    f"rc={row['rc']} {row['wall_s']:.0f} s",
                    flush=True,
                )
        runs.sort(key=lambda r: (r["task"], r["strategy"], r["jit_compile"]))
        write(out_dir, "gpu_train.json", {**common, "jobs": args.jobs, "size": size, "runs": runs})
        failed = [f"{r['task']}/{r['strategy']}/jit={r['jit_compile']} (rc={r['rc']})" for r in runs if r["rc"] != 0]
        if failed:
            problems.append("training runs failed or were skipped: " + ", ".join(failed))
        shutil.rmtree(work, ignore_errors=True)

    if problems:
        print("gpu_check: FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"gpu_check: OK in {args.budget_s - budget.left():.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
