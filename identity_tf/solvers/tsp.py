"""Travelling salesman (symmetric TSP): exact tours by Held-Karp DP (pure TF), CP-SAT or MILP (host); LKH-3."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from identity_tf.solvers import _held_karp, _lkh, _tsp_host
from identity_tf.solvers.base import HostSolver, assert_finite, register

METHODS = ("auto", "dp", "cp_sat", "milp", "lkh")
#: Largest number of cities for which ``method="auto"`` uses the DP: all the DP supports, since it was faster
#: than both exact host methods at every k <= 15 for B = 50 and B = 256 (``benchmarks/bench_tsp_auto.py``).
AUTO_DP_MAX_CITIES = _held_karp.MAX_CITIES
#: The exact host method ``method="auto"`` uses above ``AUTO_DP_MAX_CITIES``.
AUTO_HOST_METHOD = "cp_sat"
#: Relative tolerance of the symmetry check: ``|d[i, j] - d[j, i]| <= SYMMETRY_RTOL * max|d|`` per instance.
SYMMETRY_RTOL = 1e-5


@register
class TSP(HostSolver):
    """Symmetric travelling salesman: adjacency matrix ``A`` of a shortest tour, ``argmin_A <costs, A>``.

    ``A`` is the symmetric 0/1 matrix of the tour's edges (every city has exactly two), so
    ``<costs, A> = 2 * tour length`` and every solution has ``<1, A> = 2k`` (on a hyperplane). For ``k = 3``
    the only tour is the triangle. ``"dp"``, ``"cp_sat"`` and ``"milp"`` are exact; ties between optimal tours
    are broken by each method's own rule, so different methods may return different optimal tours.

    Methods:
        * ``"dp"``: Held-Karp dynamic programming in pure TensorFlow, batched over instances, XLA-compilable
          (``xla = True``). Time and memory grow as ``k^2 2^k`` (``k > 15`` is refused).
        * ``"cp_sat"``: OR-Tools CP-SAT with the circuit constraint, one search worker per instance and
          ``num_workers`` instances in parallel (threads). CP-SAT needs integer weights: the distances are
          shifted and scaled to span ``[0, 1e6]`` and rounded, so the tour is optimal up to ``k * 1e-6`` of the
          cost range.
        * ``"milp"``: HiGHS (``scipy.optimize.milp``) on the edge formulation with degree-2 constraints and
          iterative subtour-elimination cuts, ``mip_rel_gap = 0``, on the distances shifted and scaled to span
          ``[0, 1]`` (so costs of any magnitude, e.g. 1e30 or 1e-12, solve alike). Whether scipy's HiGHS
          wrapper lets ``num_workers`` threads run in parallel was not settled here (1.0x under load, 1.97x
          idle); ``"cp_sat"`` is the faster exact host method either way.
        * ``"lkh"``: LKH-3 (Lin-Kernighan-Helsgaun heuristic) through the ``elkai`` package, one run per
          instance: not proven optimal, but 7-30x faster than the exact host methods at k = 15-30 and optimal
          on 1000 / 999 / 993 of 1000 random unit-sphere instances (great-circle distances) at k = 15 / 20 /
          30 (mean excess 2e-5 at k = 30; ``benchmarks/bench_tsp_lkh.py``). The distances are shifted and
          scaled to integers spanning ``[0, 1e6]`` for you (LKH reads integer weights; with raw floats elkai
          returns useless tours). LKH holds the GIL, so the batch is split over ``num_workers`` worker
          *processes* (they import only elkai). Seeded by ``seed``: the same instance gives the same tour.
        * ``"auto"`` (default): resolved per call on the static number of cities: ``"dp"`` for
          ``k <= AUTO_DP_MAX_CITIES`` (15), else the exact host method ``AUTO_HOST_METHOD`` (``"cp_sat"``).
          Measured on a 2-core CPU under heavy load from other jobs (``benchmarks/bench_tsp_auto.py``, ms
          per batch; DP alone with XLA / in graph mode, host methods with one thread per core): B = 50:
          k = 13: 7 / 11 vs CP-SAT 2664, HiGHS 1202; k = 15: 89 / 92 vs 3161, 3981. B = 256: k = 13:
          113 / 307 vs 12508, 9098; k = 15: 315 / 1041 vs 8226, 13129. The DP stays 25-300x faster
          up to its limit, so the crossover lies above k = 15.

    ``xla`` is True when the solver compiles under XLA: always for ``"dp"``, never for the host methods, and
    for ``"auto"`` when ``num_cities`` is unknown (None) or at most ``AUTO_DP_MAX_CITIES``. A host method
    traced inside an XLA-compiled function raises a ``ValueError`` that says so (instead of TensorFlow's
    ``PyFuncStateless`` compile error): with ``"auto"`` and more cities, pass ``num_cities`` so that ``xla``
    is False and Keras' ``jit_compile="auto"`` leaves the step uncompiled.

    The host methods run behind ``tf.numpy_function`` (graph mode).

    Args:
        method: One of ``"auto"``, ``"dp"``, ``"cp_sat"``, ``"milp"``, ``"lkh"``.
        num_workers: Threads (processes for ``"lkh"``) over the batch for the host methods (default: the
            number of CPU cores available to this process).
        time_limit: Seconds per instance for the host methods (default: none). CP-SAT then returns the best
            tour found; MILP raises if the subtours are not eliminated in time; LKH stops its search (LKH's
            ``TIME_LIMIT``). Ignored by ``"dp"``.
        seed: Positive integer seed of LKH's randomised search (``"lkh"`` only).
        num_cities: The number of cities ``k``, when known in advance (None: any). Makes ``xla`` exact for
            ``"auto"``; inputs with another ``k`` are refused.
        validate_args: Check at run time that costs are finite and symmetric (relative tolerance 1e-5).
        name: Name of the solver.

    Input shape: ``[B, k, k]`` symmetric distance matrices, ``k >= 3``, finite; the diagonal is ignored.
    Output shape: ``[B, k, k]``, the symmetric 0/1 tour adjacency in the costs' dtype.

    Example:
    >>> import identity_tf as itf
    >>> square = [[[0., 1., 1.4, 1.], [1., 0., 1., 1.4], [1.4, 1., 0., 1.], [1., 1.4, 1., 0.]]]
    >>> itf.solvers.TSP(method="dp")(square).numpy()
    array([[[0., 1., 0., 1.],
            [1., 0., 1., 0.],
            [0., 1., 0., 1.],
            [1., 0., 1., 0.]]], dtype=float32)
    >>> itf.solvers.TSP(num_cities=20).xla  # "auto" with 20 cities runs on the host
    False
    """

    sense = "min"
    on_hyperplane = True
    min_rank = 3

    def __init__(
        self,
        method: str = "auto",
        num_workers: int | None = None,
        time_limit: float | None = None,
        seed: int = 1,
        num_cities: int | None = None,
        validate_args: bool = True,
        name: str | None = None,
    ):
        super().__init__(num_workers=num_workers, validate_args=validate_args, name=name)
        if method not in METHODS:
            raise ValueError(f"Argument `method` must be one of {METHODS}. Received: method={method!r}")
        if time_limit is not None and (
            isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0
        ):
            raise ValueError(
                f"Argument `time_limit` must be a positive number or None. Received: time_limit={time_limit!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 1:
            raise ValueError(f"Argument `seed` must be a positive integer. Received: seed={seed!r}")
        if num_cities is not None and (
            isinstance(num_cities, bool) or not isinstance(num_cities, (int, np.integer)) or num_cities < 3
        ):
            raise ValueError(
                f"Argument `num_cities` must be an integer >= 3 or None. Received: num_cities={num_cities!r}"
            )
        self.method = method
        self.time_limit = time_limit
        self.seed = int(seed)
        self.num_cities = None if num_cities is None else int(num_cities)

    @property
    def xla(self) -> bool:
        """True when the solver compiles under XLA (see the class docstring for ``"auto"``)."""
        if self.method == "auto":
            return self.num_cities is None or self.resolve_method(self.num_cities) == "dp"
        return self.method == "dp"

    def supports_xla(self, shape) -> bool:
        """True when a call on ``costs`` of this ``[B, k, k]`` shape compiles under XLA (it resolves to ``"dp"``)."""
        return self.resolve_method(_num_cities(tf.TensorShape(shape))) == "dp"

    def resolve_method(self, k: int | None) -> str:
        """The method used for ``k`` cities (``None``: unknown at trace time): resolves ``"auto"``."""
        if self.method != "auto":
            return self.method
        return "dp" if k is not None and k <= AUTO_DP_MAX_CITIES else AUTO_HOST_METHOD

    # ------------------------------------------------------------------------------------------ checks
    def check_shape(self, shape):
        super().check_shape(shape)
        if shape.rank != 3 or (shape[1] is not None and shape[2] is not None and shape[1] != shape[2]):
            raise ValueError(
                f"Solver {self.name!r} expects `costs` of shape [B, k, k] (square distance matrices). "
                f"Received: costs.shape={shape}"
            )
        k = _num_cities(shape)
        if k is not None and k < 3:
            raise ValueError(f"Solver {self.name!r} needs k >= 3 cities. Received: costs.shape={shape}")
        if k is not None and self.num_cities is not None and k != self.num_cities:
            raise ValueError(
                f"Solver {self.name!r} was made for num_cities={self.num_cities}. Received: costs.shape={shape}"
            )
        if self.resolve_method(k) == "dp":
            if k is None:
                raise ValueError(
                    f"Solver {self.name!r} with method='dp' needs a static number of cities k. "
                    f"Received: costs.shape={shape}"
                )
            if k > _held_karp.MAX_CITIES:
                raise ValueError(
                    f"Solver {self.name!r}: method='dp' (Held-Karp, time and memory ~ k^2 2^k) supports at most "
                    f"{_held_karp.MAX_CITIES} cities; use method='cp_sat', 'milp' or 'lkh'. Received: k={k}"
                )
        elif not tf.executing_eagerly() and control_flow_util.GraphOrParentsInXlaContext(
            tf.compat.v1.get_default_graph()
        ):
            raise ValueError(
                f"Solver {self.name!r}: method={self.method!r} runs {self.resolve_method(k)!r} on the host for "
                f"k={k} cities, which XLA cannot compile. Compile without XLA (jit_compile=False)"
                + (f", or pass num_cities={k} so that `xla` is False" if self.method == "auto" else "")
                + f", or use method='dp' (k <= {_held_karp.MAX_CITIES}). Received: costs.shape={shape}"
            )

    def check_values(self, costs):
        if self.resolve_method(_num_cities(costs.shape)) != "dp":
            return costs  # checked on the host, per instance, in `solve_batch`
        costs = assert_finite(costs, f"Solver {self.name!r} received non-finite `costs` (NaN or inf).")
        # per instance: |d - d^T| <= rtol * max|d|  ([B, k, k] vs [B, 1, 1])
        scale = tf.reduce_max(tf.abs(costs), axis=[1, 2], keepdims=True)
        symmetric = tf.reduce_all(tf.abs(costs - tf.transpose(costs, [0, 2, 1])) <= SYMMETRY_RTOL * scale)
        message = f"Solver {self.name!r} expects symmetric `costs` (relative tolerance {SYMMETRY_RTOL})."
        if tf.executing_eagerly():
            if not bool(symmetric):
                raise ValueError(message)
            return costs
        with tf.control_dependencies([tf.debugging.Assert(symmetric, [message])]):
            return tf.identity(costs)

    def check_instance(self, costs: np.ndarray, index: int | None = None) -> None:
        """Host-side check of one ``[k, k]`` instance: finite and symmetric (``ValueError`` otherwise)."""
        where = "" if index is None else f" in instance {index}"
        if not np.all(np.isfinite(costs)):
            raise ValueError(f"Solver {self.name!r} received non-finite `costs` (NaN or inf){where}.")
        largest = np.max(np.abs(costs))
        scaled = costs / largest if largest > 0 else costs  # no overflow in the difference below
        asymmetry = np.abs(scaled - scaled.T)
        if np.any(asymmetry > SYMMETRY_RTOL):
            i, j = np.unravel_index(int(np.argmax(asymmetry)), asymmetry.shape)
            raise ValueError(
                f"Solver {self.name!r} expects symmetric `costs` (relative tolerance {SYMMETRY_RTOL}){where}. "
                f"Received: costs[{i}, {j}]={costs[i, j]!r}, costs[{j}, {i}]={costs[j, i]!r}"
            )

    # ------------------------------------------------------------------------------------------- solve
    def _solve(self, costs):
        k = _num_cities(costs.shape)
        if self.resolve_method(k) == "dp":
            costs = tf.reshape(costs, [-1, k, k])  # makes both city axes static when only one of them was
            return _held_karp.adjacency(costs + 0.0)  # + 0.0 maps -0.0 to +0.0
        return super()._solve(costs)  # host: thread pool (process pool for LKH) behind tf.numpy_function

    def solve_batch(self, costs: np.ndarray) -> np.ndarray:
        """Solves a numpy batch ``[B, k, k]``; returns ``[B, k, k]`` in the input's dtype (any method)."""
        costs = np.asarray(costs)
        if costs.ndim != 3 or costs.shape[1] != costs.shape[2] or costs.shape[1] < 3:
            raise ValueError(
                f"Solver {self.name!r} expects `costs` of shape [B, k, k] with k >= 3. "
                f"Received: costs.shape={costs.shape}"
            )
        method = self.resolve_method(costs.shape[-1])
        if method == "dp":
            return self(tf.convert_to_tensor(costs)).numpy()
        if self.validate_args:  # first pass names the failing instance; the base class repeats it per instance
            for index, instance in enumerate(costs.astype(np.float64)):
                self.check_instance(instance, index)
        if method == "lkh":
            workers = self.num_workers or _available_cpus()
            return _lkh.solve_batch(costs.astype(np.float64), workers, self.seed, self.time_limit).astype(costs.dtype)
        return super().solve_batch(costs)

    def solve_one(self, costs: np.ndarray) -> np.ndarray:
        method = self.resolve_method(costs.shape[-1])
        if method == "milp":
            return _tsp_host.milp_tour(costs, self.time_limit)
        if method == "lkh":
            return _lkh.solve_batch(costs[None], 1, self.seed, self.time_limit)[0]
        return _tsp_host.cp_sat_tour(costs, self.time_limit)

    def output_shape(self, instance_shape):
        return instance_shape

    def project_to_domain(self, costs):
        """Symmetrises ``0.5 * (costs + costs^T)``: exact, since ``<costs, A>`` only sees the symmetric part."""
        return 0.5 * (costs + tf.linalg.matrix_transpose(costs))  # any leading axes ([B] or [S, B])

    # ----------------------------------------------------------------------------------- serialisation
    def get_config(self):
        return {
            **super().get_config(),
            "method": self.method,
            "time_limit": self.time_limit,
            "seed": self.seed,
            "num_cities": self.num_cities,
        }


def _available_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _num_cities(shape: tf.TensorShape) -> int | None:
    """Static ``k`` of a ``[B, k, k]`` shape (from whichever city axis is known), or None."""
    return shape[1] if shape[1] is not None else shape[2]
