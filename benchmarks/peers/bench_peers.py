"""identity_tf's train steps against PyTorch peers: the original Blackbox-Backprop models and PyEPO.

Setup, once: torch and PyEPO go into a separate virtualenv (``setup.cfg``'s ``peers`` extra), never into the
project's; a CPU-only torch build is enough (a CUDA build is several GB)::

    python -m venv ../peers-venv
    ../peers-venv/bin/pip install 'torch==2.13.0+cpu'     # or any CPU-only build the package index offers
    ../peers-venv/bin/pip install -e '.[peers]'           # identity_tf (the TSP peers call its solvers), PyEPO

Usage: identity_tf's side runs in the interpreter that runs this script, the PyTorch side in ``--peer-python``::

    PEER=../peers-venv/bin/python
    python benchmarks/peers/bench_peers.py --peer-python $PEER --tasks warcraft12 --rounds 8 --steps 1 --save
    python benchmarks/peers/bench_peers.py --peer-python $PEER --tasks globe_tsp10 globe_tsp20 pyepo_sp --save

Never part of the test suite. A task whose peer needs a package that the peer interpreter lacks (torch; PyEPO for
``pyepo_sp``; elkai for ``globe_tsp20``) is skipped with a line saying so; with nothing left to run the script
exits with status 0 and writes nothing.

Tasks (``TASKS``) and their variants, every step on the same random batch of the task's shape and batch size:

* ``warcraft12``: identity_tf's Warcraft 12x12 model (batch 70) built and compiled as the trainer builds it
  (``train.build_and_compile``, ``train.jit_compile: auto``), Identity and BB configs; the original BB PyTorch
  model (``torch_peers.py``, written from its definition: the published repository does not run on current
  PyTorch) with BB and with Identity, the original heapq Dijkstra per instance on the host; BB with scipy's
  Dijkstra per instance (a faster host solver than the original's); and BB with ``OMP_WAIT_POLICY=PASSIVE``.
  torch's OpenMP threads spin while they wait by default, which costs much when other processes share the cores
  (measured here at load average 9-10: 1.9 s CPU and 5.6 s wall per Identity step by default, 1.1-1.2 s CPU and
  3.0-4.1 s wall with PASSIVE, 1.1-1.3 s CPU and 2.4-2.6 s wall with one thread); the PASSIVE peer is the
  fairer one on a loaded machine.
* ``globe_tsp10`` / ``globe_tsp20``: identity_tf's Globe TSP(10) (Held-Karp DP, batch 50) and TSP(20) (LKH)
  configs, Identity + P_std and BB; a BB PyTorch step of the same network calling the same solver once per
  instance, forward and backward (the paper's Table 8 setting): TSP(10) the XLA-compiled Held-Karp DP of
  identity_tf on one instance, and CP-SAT (exact); TSP(20) LKH (``TSP(method="lkh").solve_one``); the DP and LKH
  peers also with ``OMP_WAIT_POLICY=PASSIVE``.
* ``pyepo_sp``: PyEPO's shortest path on its 5x5 grid (40 edges, 5 features, batch 32), a linear model: PyEPO's
  ``negativeIdentity`` (NID) and ``blackboxOpt`` (DBB, lambda 20) on its OR-Tools (GLOP) model, L1 loss to the
  true solutions; identity_tf's ``SolverLayer`` (Identity, BB) around ``IntegerLinearProgram`` (HiGHS) with the
  same flow constraints, in a Keras model compiled with ``jit_compile`` from ``execution.resolve("auto", ...)``.

Every variant runs in its own worker process (built, then two warm-up steps), so that no thread pool of one side
competes with the other; the workers then take turns, ``--steps`` steps each per round, in an order that rotates
from round to round. Each round's ratio ``ours / peer`` is taken within the round, so load from other processes
hits both sides alike; the JSON (``benchmarks/results/peers_<task>.json`` with ``--save``) holds every round's
times, the ratios per round, their median and range, and the load average before and after.
``python benchmarks/peers/table.py`` renders README's table from those files.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # benchmarks/_results.py
sys.path.insert(0, str(REPO))  # identity_tf without installing

import _results  # noqa: E402
import numpy as np  # noqa: E402

NAME = "peers"
PROTOCOL = "@@peers "  # prefix of the lines a worker writes for the orchestrator (TF and torch print too)

#: task -> variants (name -> spec) and comparisons (ours, peer, target or None). "ours" specs name a config.
TASKS = {
    "warcraft12": {
        "variants": {
            "ours_identity": {"side": "identity_tf", "config": "configs/warcraft/warcraft12_identity.yaml"},
            "ours_bb": {"side": "identity_tf", "config": "configs/warcraft/warcraft12_blackbox.yaml"},
            "peer_bb": {"side": "pytorch", "gradient": "blackbox", "solver": "python"},
            "peer_identity": {"side": "pytorch", "gradient": "identity", "solver": "python"},
            "peer_bb_scipy": {"side": "pytorch", "gradient": "blackbox", "solver": "scipy"},
            # OpenMP threads that sleep while waiting: torch's default spin-waiting loses much to other load
            "peer_bb_passive": {
                "side": "pytorch",
                "gradient": "blackbox",
                "solver": "python",
                "env": {"OMP_WAIT_POLICY": "PASSIVE"},
            },
        },
        "comparisons": [
            ("ours_identity", "peer_bb", 0.8),
            ("ours_bb", "peer_bb", 0.8),
            ("ours_identity", "peer_bb_passive", 0.8),
            ("ours_bb", "peer_bb_passive", 0.8),
            ("ours_identity", "peer_identity", None),
            ("ours_bb", "peer_bb_scipy", None),
        ],
        "needs": ["torch"],
    },
    "globe_tsp10": {
        "variants": {
            "ours_identity": {"side": "identity_tf", "config": "configs/globe_tsp/tsp10_identity_noise0.2.yaml"},
            "ours_bb": {"side": "identity_tf", "config": "configs/globe_tsp/tsp10_blackbox.yaml"},
            "peer_bb_dp": {"side": "pytorch", "solver": "dp"},
            "peer_bb_cp_sat": {"side": "pytorch", "solver": "cp_sat"},
            "peer_bb_dp_passive": {"side": "pytorch", "solver": "dp", "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
        },
        "comparisons": [
            ("ours_identity", "peer_bb_dp", 0.5),
            ("ours_identity", "peer_bb_dp_passive", 0.5),
            ("ours_bb", "peer_bb_dp", None),
            ("ours_identity", "peer_bb_cp_sat", 0.5),
        ],
        "needs": ["torch"],
    },
    "globe_tsp20": {
        "variants": {
            "ours_identity": {"side": "identity_tf", "config": "configs/globe_tsp/tsp20_identity_noise0.2.yaml"},
            "ours_bb": {"side": "identity_tf", "config": "configs/globe_tsp/tsp20_blackbox.yaml"},
            "peer_bb_lkh": {"side": "pytorch", "solver": "lkh"},
            "peer_bb_lkh_passive": {"side": "pytorch", "solver": "lkh", "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
        },
        "comparisons": [
            ("ours_identity", "peer_bb_lkh", 0.5),
            ("ours_identity", "peer_bb_lkh_passive", 0.5),
            ("ours_bb", "peer_bb_lkh", None),
        ],
        "needs": ["torch", "elkai"],
    },
    "pyepo_sp": {
        "variants": {
            "ours_identity": {"side": "identity_tf", "gradient": "identity", "solver": "highs"},
            "ours_bb": {"side": "identity_tf", "gradient": "blackbox", "solver": "highs"},
            "ours_identity_glop": {"side": "identity_tf", "gradient": "identity", "solver": "glop"},
            "ours_bb_glop": {"side": "identity_tf", "gradient": "blackbox", "solver": "glop"},
            "pyepo_nid": {"side": "pytorch", "gradient": "nid"},
            "pyepo_dbb": {"side": "pytorch", "gradient": "dbb"},
        },
        "comparisons": [
            ("ours_identity", "pyepo_nid", None),
            ("ours_bb", "pyepo_dbb", None),
            ("ours_identity_glop", "pyepo_nid", None),
            ("ours_bb_glop", "pyepo_dbb", None),
        ],
        "needs": ["torch", "pyepo", "ortools"],
    },
}
#: Batch sizes: the paper tasks' configs (Warcraft 70, Globe TSP 50); PyEPO's tutorials use 32.
PYEPO_GRID, PYEPO_FEATURES, PYEPO_BATCH, PYEPO_LAMBDA = (5, 5), 5, 32, 20.0
PYEPO_DATA_ENV = "PEERS_PYEPO_DATA"


# -------------------------------------------------------------------------------------------------- data


def warcraft_data(size: int, batch: int, seed: int = 0):
    """Random normalised maps ``[B, 8k, 8k, 3]``, random 0/1 paths and true costs ``[B, k, k]``."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(batch, 8 * size, 8 * size, 3)).astype("float32")
    paths = (rng.random((batch, size, size)) < 0.2).astype("float32")
    weights = rng.uniform(0.8, 9.2, size=(batch, size, size)).astype("float32")
    return maps, paths, weights


def random_tours(batch: int, k: int, rng) -> np.ndarray:
    """``[B, k, k]`` adjacency matrices of random tours (valid targets of the TSP layer).

    Example:
    >>> tours = random_tours(3, 5, np.random.default_rng(0))
    >>> tours.sum(axis=2).tolist() == [[2.0] * 5] * 3 and bool((tours == tours.transpose(0, 2, 1)).all())
    True
    """
    out = np.zeros((batch, k, k), np.float32)
    for b in range(batch):
        order = rng.permutation(k)
        out[b, order, np.roll(order, -1)] = 1.0
        out[b, np.roll(order, -1), order] = 1.0
    return out


def globe_data(k: int, batch: int, seed: int = 0):
    """Random flags ``[B, k, 20, 40, 3]`` in [0, 1] and random tours."""
    rng = np.random.default_rng(seed)
    return rng.random((batch, k, 20, 40, 3)).astype("float32"), random_tours(batch, k, rng)


def grid_arcs(grid=PYEPO_GRID) -> list[tuple[int, int]]:
    """PyEPO's arcs of the grid network: right and down moves, in PyEPO's order (``pyepo.model.utils``).

    Example:
    >>> len(grid_arcs((5, 5)))
    40
    """
    arcs = []
    for i in range(grid[0]):
        for j in range(grid[1] - 1):  # right
            v = i * grid[1] + j
            arcs.append((v, v + 1))
        if i == grid[0] - 1:
            continue
        for j in range(grid[1]):  # down
            v = i * grid[1] + j
            arcs.append((v, v + grid[1]))
    return arcs


def flow_constraints(grid=PYEPO_GRID):
    """``A_eq x = b_eq`` of PyEPO's shortest-path LP: inflow - outflow = -1 at the source, 1 at the sink."""
    arcs = grid_arcs(grid)
    n = grid[0] * grid[1]
    a = np.zeros((n, len(arcs)))
    for e, (u, v) in enumerate(arcs):
        a[v, e] += 1.0
        a[u, e] -= 1.0
    b = np.zeros(n)
    b[0], b[-1] = -1.0, 1.0
    return a, b


# ----------------------------------------------------------------------------------------------- workers


def _ours_paper_step(spec: dict):
    import keras
    import tensorflow as tf

    from identity_tf import train
    from identity_tf.tasks import registry

    config = train.load_config(REPO / spec["config"])  # train.jit_compile as the config says: "auto"
    b = config.train.batch_size
    if config.task == "warcraft":
        maps, paths, weights = warcraft_data(config.data.size, b)
        x, y = maps, np.stack([paths, weights], axis=-1)  # targets [B, k, k, 2]
    else:
        x, y = globe_data(config.data.k, b)
    x, y = tf.constant(x), tf.constant(y)
    keras.utils.set_random_seed(0)
    model = train.build_and_compile(config, registry.get(config.task), tf.distribute.get_strategy(), None, sample=x)
    info = {"config": spec["config"], "batch_size": b, "jit_compile": bool(model.jit_compile)}
    return (lambda: model.train_on_batch(x, y)), info


def _ours_pyepo_step(spec: dict):
    import keras
    import tensorflow as tf

    from identity_tf import execution, gradients, layers, solvers

    x, _, solutions = pyepo_data()
    a_eq, b_eq = flow_constraints()
    keras.utils.set_random_seed(0)
    method = gradients.Identity() if spec["gradient"] == "identity" else gradients.Blackbox(lam=PYEPO_LAMBDA)
    inputs = keras.Input((PYEPO_FEATURES,))
    costs = keras.layers.Dense(a_eq.shape[1], name="linear")(inputs)
    if spec["solver"] == "glop":  # the LP PyEPO solves, through identity_tf's numpy-solver wrapper
        solver = solvers.from_numpy(GlopShortestPath(), name="glop_shortest_path", num_workers=1)
    else:
        solver = solvers.IntegerLinearProgram(A_eq=a_eq, b_eq=b_eq)
    outputs = layers.SolverLayer(solver, gradient=method)(costs)
    model = keras.Model(inputs, outputs)
    jit = execution.resolve("auto", model)
    model.compile(keras.optimizers.Adam(1e-2), loss="mae", jit_compile=jit)
    x, y = tf.constant(x), tf.constant(solutions)
    info = {"batch_size": PYEPO_BATCH, "jit_compile": bool(jit), "solver": spec["solver"]}
    return (lambda: model.train_on_batch(x, y)), info


class GlopShortestPath:
    """PyEPO's shortest-path LP (``pyepo.model.ort.shortestPathModel``: flow constraints, ``0 <= x <= 1``) in
    OR-Tools' GLOP, one instance per call on one reused model; the solution is rounded (a vertex of the LP)."""

    def __init__(self, grid=PYEPO_GRID):
        from ortools.linear_solver import pywraplp

        a, b = flow_constraints(grid)
        self.solver = pywraplp.Solver.CreateSolver("GLOP")
        self.x = [self.solver.NumVar(0.0, 1.0, f"x_{e}") for e in range(a.shape[1])]
        for row, rhs in zip(a, b):
            self.solver.Add(sum(coef * self.x[e] for e, coef in enumerate(row) if coef) == rhs)

    def __call__(self, costs: np.ndarray) -> np.ndarray:
        objective = self.solver.Objective()
        for variable, cost in zip(self.x, costs):
            objective.SetCoefficient(variable, float(cost))
        objective.SetMinimization()
        self.solver.Solve()
        return np.rint([variable.solution_value() for variable in self.x])


def pyepo_data(seed: int = 135):
    """One batch of PyEPO's shortest-path data (``genData``, degree 4, noise 0.5): features, costs, solutions.

    Read from the ``.npz`` file named by ``$PEERS_PYEPO_DATA`` when set: the orchestrator generates the batch
    once with the PyTorch side's interpreter (PyEPO imports torch), so identity_tf's side needs no PyEPO.
    """
    if os.environ.get(PYEPO_DATA_ENV):
        data = np.load(os.environ[PYEPO_DATA_ENV])
        return data["x"], data["c"], data["solutions"]
    import pyepo

    x, c = pyepo.data.shortestpath.genData(PYEPO_BATCH, PYEPO_FEATURES, PYEPO_GRID, deg=4, noise_width=0.5, seed=seed)
    model = pyepo.model.ort.shortestPathModel(PYEPO_GRID)
    solutions = []
    for costs in c:
        model.setObj(costs)
        solution, _ = model.solve()
        solutions.append(solution)
    return x.astype("float32"), c.astype("float32"), np.asarray(solutions, "float32")


def _pyepo_step(spec: dict):
    import pyepo
    import torch

    x, _, solutions = pyepo_data()
    torch.manual_seed(0)
    optmodel = pyepo.model.ort.shortestPathModel(PYEPO_GRID)
    linear = torch.nn.Linear(PYEPO_FEATURES, len(optmodel.arcs))
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2)
    if spec["gradient"] == "nid":
        layer = pyepo.func.negativeIdentity(optmodel, processes=1)
    else:
        layer = pyepo.func.blackboxOpt(optmodel, lambd=PYEPO_LAMBDA, processes=1)
    l1 = torch.nn.L1Loss()
    x, w = torch.from_numpy(x), torch.from_numpy(solutions)

    def step():
        optimizer.zero_grad()
        loss = l1(layer(linear(x)), w)
        loss.backward()
        optimizer.step()

    return step, {"batch_size": PYEPO_BATCH, "solver": "pyepo.model.ort.shortestPathModel (GLOP)"}


def _peer_paper_step(task: str, spec: dict):
    import torch_peers

    if task == "warcraft12":
        maps, paths, _ = warcraft_data(12, 70)
        step = torch_peers.warcraft_step(spec["gradient"], spec["solver"], maps, paths)
        return step, {"batch_size": 70, "dijkstra": spec["solver"]}
    k = 10 if task == "globe_tsp10" else 20
    flags, tours = globe_data(k, 50)
    step = torch_peers.tsp_step(tsp_solver(spec["solver"], k), flags, tours)
    return step, {"batch_size": 50, "solver_per_instance": spec["solver"]}


def tsp_solver(method: str, k: int):
    """identity_tf's TSP solver for one ``[k, k]`` instance: "dp" (the Held-Karp DP, XLA), "cp_sat", "lkh"."""
    from identity_tf.solvers.tsp import TSP

    solver = TSP(method=method, num_cities=k)
    if method != "dp":
        return solver.solve_one
    import tensorflow as tf

    compiled = tf.function(solver._solve, jit_compile=True)  # the solve the trainer compiles (compile_solvers)
    return lambda costs: compiled(tf.constant(costs[None]))[0].numpy()


def worker(task: str, name: str) -> None:
    """Builds one variant, warms it up, then runs ``run N`` requests from stdin until ``quit``."""
    spec = TASKS[task]["variants"][name]
    start = time.perf_counter()
    if spec["side"] == "identity_tf":
        step, info = _ours_pyepo_step(spec) if task == "pyepo_sp" else _ours_paper_step(spec)
    elif task == "pyepo_sp":
        step, info = _pyepo_step(spec)
    else:
        import torch

        step, info = _peer_paper_step(task, spec)
        info["torch_threads"] = torch.get_num_threads()
    step()
    info["first_step_s"] = time.perf_counter() - start  # build + tracing / compilation + one step
    step()
    _say({"ready": info})
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            return
        steps = int(command[1])
        wall, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(steps):
            step()
        _say({"ms": (time.perf_counter() - wall) / steps * 1e3, "cpu_ms": (cpu_seconds() - cpu) / steps * 1e3})


def cpu_seconds() -> float:
    """CPU time (user + system, all threads) of this process and its live child processes (LKH's workers).

    Children are read from ``/proc`` (Linux); elsewhere only this process counts.
    """
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    children = []
    for task in pathlib.Path(f"/proc/{os.getpid()}/task").glob("*"):  # a child belongs to the thread that forked it
        try:
            children += (task / "children").read_text().split()
        except OSError:  # no /proc, or the thread ended meanwhile
            continue
    for pid in children:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of stat)
    return total


def _say(message: dict) -> None:
    sys.stdout.write(PROTOCOL + json.dumps(message) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------ orchestrator


class Worker:
    def __init__(self, python: str, task: str, name: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
        env.update(TASKS[task]["variants"][name].get("env", {}))
        self.name = name
        self.process = subprocess.Popen(
            [python, str(pathlib.Path(__file__).resolve()), "--worker", task, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.info = self._read()["ready"]

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(PROTOCOL):
                return json.loads(line[len(PROTOCOL) :])
        raise RuntimeError(f"worker {self.name!r} exited (status {self.process.wait()}) before answering")

    def run(self, steps: int) -> dict:
        self.process.stdin.write(f"run {steps}\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=60)


def missing(python: str, modules: list[str]) -> list[str]:
    """The modules of ``modules`` that ``python`` cannot find (without importing them)."""
    probe = (
        "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    )
    out = subprocess.run([python, "-c", probe, *modules], capture_output=True, text=True, check=True).stdout
    return out.split()


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def compare(pairs, times: dict, cpu: dict) -> list[dict]:
    """Per-round ratios ``ours / peer`` of wall and CPU times, their median and range, and the target verdict.

    Example:
    >>> [c] = compare([("a", "b", 0.5)], {"a": [1.0, 3.0], "b": [4.0, 4.0]}, {"a": [1.0, 1.0], "b": [2.0, 1.0]})
    >>> c["per_round"], c["median"], c["met"], c["cpu"]
    ([0.25, 0.75], 0.5, True, {'median': 0.75, 'min': 0.5, 'max': 1.0})
    """
    out = []
    for ours, peer, target in pairs:
        per_round = [a / b for a, b in zip(times[ours], times[peer], strict=True)]
        cpu_per_round = [a / b for a, b in zip(cpu[ours], cpu[peer], strict=True)]
        entry = {"ours": ours, "peer": peer, "per_round": per_round, **summary(per_round), "target": target}
        entry["cpu_per_round"] = cpu_per_round
        entry["cpu"] = summary(cpu_per_round)
        if target is not None:
            entry["met"] = entry["median"] <= target
        out.append(entry)
    return out


def bench_task(task: str, rounds: int, steps: int, peer_python: str) -> dict:
    spec = TASKS[task]
    load_before = os.getloadavg()
    workers = {}
    scratch = tempfile.TemporaryDirectory()
    if task == "pyepo_sp":  # one batch for both sides, made where PyEPO is installed
        path = os.path.join(scratch.name, "pyepo.npz")
        subprocess.run([peer_python, str(pathlib.Path(__file__).resolve()), "--pyepo-data", path], check=True)
        os.environ[PYEPO_DATA_ENV] = path  # the workers inherit it
    try:
        for name, variant in spec["variants"].items():  # built one at a time
            python = peer_python if variant["side"] == "pytorch" else sys.executable
            workers[name] = Worker(python, task, name)
            print(f"  {name}: ready ({workers[name].info['first_step_s']:.1f} s to build and take a step)", flush=True)
        names = list(workers)
        times = {name: [] for name in names}
        cpu = {name: [] for name in names}
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotates: no variant always runs first
            for name in order:
                answer = workers[name].run(steps)
                times[name].append(answer["ms"])
                cpu[name].append(answer["cpu_ms"])
            print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.0f}" for n in names), flush=True)
    finally:
        for w in workers.values():
            w.close()
        os.environ.pop(PYEPO_DATA_ENV, None)
        scratch.cleanup()
    variants = {
        name: {
            **spec["variants"][name],
            **workers[name].info,
            "round_ms": times[name],
            "round_process_cpu_ms": cpu[name],
            "median_ms": statistics.median(times[name]),
            "median_cpu_ms": statistics.median(cpu[name]),
        }
        for name in names
    }
    return {
        "benchmark": NAME,
        "task": task,
        "rounds": rounds,
        "steps_per_round": steps,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "platform": platform.platform(),
        "versions": versions(peer_python),
        "variants": variants,
        "comparisons": compare(spec["comparisons"], times, cpu),
    }


def versions(peer_python: str) -> dict:
    probe = (
        "import importlib.metadata as m, json\nout = {}\n"
        "for p in ('tensorflow', 'keras', 'torch', 'pyepo', 'ortools', 'elkai', 'numpy'):\n"
        "    try: out[p] = m.version(p)\n    except m.PackageNotFoundError: pass\nprint(json.dumps(out))"
    )
    ours = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout)
    peer = json.loads(subprocess.run([peer_python, "-c", probe], capture_output=True, text=True).stdout)
    return {"identity_tf_side": ours, "pytorch_side": peer}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    parser.add_argument(
        "--peer-python", default=sys.executable, help="interpreter of the PyTorch side (default: this one)"
    )
    parser.add_argument("--worker", nargs=2, metavar=("TASK", "VARIANT"), help=argparse.SUPPRESS)
    parser.add_argument("--pyepo-data", metavar="NPZ", help=argparse.SUPPRESS)  # writes PyEPO's batch
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", help="JSON output path of a single task (default: benchmarks/results/local/)")
    group.add_argument("--save", action="store_true", help="write the tracked benchmarks/results/peers_<task>.json")
    args = parser.parse_args(argv)
    if args.out and len(args.tasks) > 1:
        parser.error("--out takes one task (--tasks NAME); several tasks write one file each")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if args.pyepo_data:
        x, c, solutions = pyepo_data()
        np.savez(args.pyepo_data, x=x, c=c, solutions=solutions)
        return
    ran = 0
    for task in args.tasks:
        absent = missing(args.peer_python, TASKS[task]["needs"])
        if absent:
            print(f"{task}: skipped, {args.peer_python} lacks {', '.join(absent)} (pip install '.[peers]')")
            continue
        print(f"{task}:", flush=True)
        result = bench_task(task, args.rounds, args.steps, args.peer_python)
        for c in result["comparisons"]:
            verdict = "" if c["target"] is None else f" (target <= {c['target']}: {'met' if c['met'] else 'MISSED'})"
            print(f"  {c['ours']} / {c['peer']}: {c['median']:.2f} [{c['min']:.2f}, {c['max']:.2f}]{verdict}")
        _results.write(_results.output_path(args, f"{NAME}_{task}"), result)
        ran += 1
    if not ran:
        print("nothing run: no task's peer packages are installed")


if __name__ == "__main__":
    main()
