"""LKH-3 (Helsgaun's Lin-Kernighan heuristic, through the ``elkai`` binding) for the symmetric TSP, batched.

LKH reads integer edge weights: handed raw float distances, elkai's LKH silently solves a different problem
(issue 13 measured a 62 % mean gap to the optimum). :func:`integer_weights` therefore shifts and scales every
instance so that its off-diagonal entries span ``[0, INTEGER_SCALE]`` and rounds them (every tour has exactly
``k`` edges, so the shift and the positive scale leave the optimal tours unchanged; the rounding moves a tour's
length by at most ``k * 0.5 / INTEGER_SCALE`` of the cost range).

elkai holds the GIL while LKH runs, and LKH keeps its state in C globals, so threads cannot run two solves at
once (measured: two threads over 40 instances of k = 30 took 1.44x the time of a plain loop). Batches are
therefore split over worker *processes*: ``python -c`` children that import only elkai (never TensorFlow, never
the user's main module), started on first use, kept for the life of the process and fed through pipes.
LKH is seeded (``SEED``): the same instance and seed give the same tour, whichever worker solves it.
"""

from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading

import numpy as np

from identity_tf.solvers import _tsp_host

#: Integer weights span ``[0, INTEGER_SCALE]``. LKH computes ``PRECISION * w + pi_i + pi_j`` in 32-bit ints
#: (``PRECISION = 100``), so ``100 * 1e6`` keeps well inside the int32 range.
INTEGER_SCALE = 1_000_000
#: LKH runs (independent restarts, best tour kept) per instance. Measured on 1000 random unit-sphere
#: instances of k = 30 (great-circle distances): 1 run found the optimum of 993; 3 runs shortened the tour of
#: 4 of the other 7 (1.6x the time), 10 runs of 6 (4.7x the time). At k = 15 / 20, 1 run found the optimum of
#: 1000 / 999 (``benchmarks/bench_tsp_lkh.py``).
RUNS = 1
#: Batches smaller than this are solved in-process (the pipe round trip costs more than it saves).
MIN_BATCH_FOR_WORKERS = 4

_INSTALL_HINT = "TSP(method='lkh') needs the `elkai` package (LKH-3 bindings): `pip install elkai` (a manylinux wheel)."


def _elkai():
    """The compiled ``elkai._elkai`` module, with an install hint when elkai is missing."""
    try:
        from elkai import _elkai as module
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return module


def integer_weights(distances: np.ndarray) -> np.ndarray:
    """``[k, k]`` distances -> ``[k, k]`` int64 weights in ``[0, INTEGER_SCALE]`` with the same optimal tours.

    Example:
    >>> integer_weights(np.array([[0., 2., 3.], [2., 0., 4.], [3., 4., 0.]]))
    array([[      0,       0,  500000],
           [      0,       0, 1000000],
           [ 500000, 1000000,       0]])
    """
    return np.rint(_tsp_host.normalized_distances(distances) * INTEGER_SCALE).astype(np.int64)


def parameters(seed: int, time_limit: float | None, runs: int = RUNS) -> str:
    """LKH parameter text (``PROBLEM_FILE = :stdin:`` is elkai's in-memory problem)."""
    text = f"RUNS = {runs}\nSEED = {seed}\nPROBLEM_FILE = :stdin:\n"
    if time_limit is not None:
        text += f"TIME_LIMIT = {float(time_limit)}\n"
    return text


def problem(weights: np.ndarray) -> str:
    """TSPLIB text of a symmetric instance with explicit integer weights (full matrix)."""
    rows = "\n".join(" ".join(map(str, row)) for row in weights.tolist())
    return (
        f"TYPE : TSP\nDIMENSION : {len(weights)}\nEDGE_WEIGHT_TYPE : EXPLICIT\nEDGE_WEIGHT_FORMAT : FULL_MATRIX\n"
        f"EDGE_WEIGHT_SECTION\n{rows}\n"
    )


def order_to_adjacency(order, k: int) -> np.ndarray:
    """Tour as a city order (0-based, each city once) -> ``[k, k]`` symmetric 0/1 adjacency (float64)."""
    order = np.asarray(order, dtype=np.int64)
    if sorted(order.tolist()) != list(range(k)):
        raise RuntimeError(f"LKH returned an invalid tour for k={k} cities. Received: order={order.tolist()}")
    out = np.zeros((k, k), dtype=np.float64)
    successor = np.roll(order, -1)
    out[order, successor] = out[successor, order] = 1.0
    return out


def _solve_jobs(jobs: list[tuple[str, str]]) -> list:
    """Solves ``(parameters, problem)`` jobs in this process; LKH's 1-based orders -> 0-based."""
    module = _elkai()
    return [[city - 1 for city in module.solve_problem(params, text)] for params, text in jobs]


def solve_batch(distances: np.ndarray, num_workers: int, seed: int, time_limit: float | None) -> np.ndarray:
    """``[B, k, k]`` float distances -> ``[B, k, k]`` float64 tour adjacencies, over ``num_workers`` processes."""
    k = distances.shape[-1]
    params = parameters(seed, time_limit)
    jobs = [(params, problem(integer_weights(instance))) for instance in distances]
    if num_workers <= 1 or len(jobs) < MIN_BATCH_FOR_WORKERS:
        orders = _solve_jobs(jobs)
    else:
        orders = _pool(num_workers).map(jobs, num_workers)
    if not orders:
        return np.zeros((0, k, k), dtype=np.float64)
    return np.stack([order_to_adjacency(order, k) for order in orders])


# ------------------------------------------------------------------------------------------ worker processes
# The child reads length-prefixed pickles of job lists on stdin and writes the list of tours (or an error
# string) to a private copy of its stdout; LKH's own prints, if any, go to /dev/null. Only the parent
# writes the pickles it reads (a private pipe).
_WORKER = r"""
import os, pickle, signal, struct, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; the child ends at EOF on stdin
sys.path = [p for p in sys.path if p]
out = os.fdopen(os.dup(1), "wb")
devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 1)
inp = sys.stdin.buffer
from elkai import _elkai
while True:
    header = inp.read(8)
    if len(header) < 8:
        break
    jobs = pickle.loads(inp.read(struct.unpack("<Q", header)[0]))
    try:
        reply = [[c - 1 for c in _elkai.solve_problem(p, t)] for p, t in jobs]
    except BaseException as error:
        reply = f"{type(error).__name__}: {error}"
    payload = pickle.dumps(reply)
    out.write(struct.pack("<Q", len(payload)) + payload)
    out.flush()
"""


class _WorkerPool:
    """``num_workers`` LKH child processes; :meth:`map` splits a job list into contiguous chunks, one per worker."""

    def __init__(self, num_workers: int):
        _elkai()  # fail here, with the install hint, rather than in the children
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.workers = [
            subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            for _ in range(num_workers)
        ]

    def map(self, jobs: list[tuple[str, str]], num_workers: int) -> list:
        n = min(num_workers, len(self.workers), len(jobs))
        bounds = np.linspace(0, len(jobs), n + 1).round().astype(int)
        with self.lock:
            for worker, start, stop in zip(self.workers, bounds[:-1], bounds[1:]):
                payload = pickle.dumps(jobs[start:stop])
                self._io(worker, lambda: worker.stdin.write(struct.pack("<Q", len(payload)) + payload))
                self._io(worker, worker.stdin.flush)
            replies = [self._read(worker) for worker in self.workers[:n]]
        orders = []
        for reply in replies:
            if isinstance(reply, str):
                raise RuntimeError(f"LKH failed in a worker process: {reply}")
            orders.extend(reply)
        return orders

    def _read(self, worker):
        header = self._io(worker, lambda: worker.stdout.read(8))
        if len(header) < 8:
            self._died(worker)
        return pickle.loads(self._io(worker, lambda: worker.stdout.read(struct.unpack("<Q", header)[0])))

    def _io(self, worker, fn):
        try:
            return fn()
        except (BrokenPipeError, OSError):
            self._died(worker)

    def _died(self, worker):
        code = worker.poll()
        close_pool()
        raise RuntimeError(
            f"An LKH worker process exited (exit code {code}); the workers are restarted on the next call."
        )

    def close(self):
        for worker in self.workers:
            try:
                worker.stdin.close()  # EOF: the child leaves its loop
                worker.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                worker.kill()


_pool_lock = threading.Lock()
_the_pool: _WorkerPool | None = None


def _pool(num_workers: int) -> _WorkerPool:
    """The process-wide pool, (re)started when missing, too small or inherited through ``fork``."""
    global _the_pool
    with _pool_lock:
        pool = _the_pool
        if pool is not None and pool.pid == os.getpid() and len(pool.workers) >= num_workers:
            if all(worker.poll() is None for worker in pool.workers):
                return pool
        if pool is not None and pool.pid == os.getpid():
            pool.close()
        _the_pool = _WorkerPool(num_workers)
        return _the_pool


def close_pool() -> None:
    """Stops the worker processes (they are restarted on the next batched call)."""
    global _the_pool
    with _pool_lock:
        pool, _the_pool = _the_pool, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


atexit.register(close_pool)
