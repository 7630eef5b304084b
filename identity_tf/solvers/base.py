"""Base classes shared by every solver.

A solver is a stateless callable ``costs -> solution``, batch first. It never defines gradients: the gradient
methods in :mod:`identity_tf.gradients` wrap a solver. Two families exist:

* :class:`Solver` subclasses implement ``_solve`` in pure TensorFlow (``xla = True``).
* :class:`HostSolver` subclasses implement ``solve_one`` in numpy on the host; the batch is solved in a thread
  pool behind ``tf.numpy_function`` (OR-Tools CP-SAT and scipy's ``linear_sum_assignment`` release the GIL and
  scale with threads; see ``TSP`` for HiGHS).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
from typing import Any

import keras
import numpy as np
import tensorflow as tf

SENSES = ("min", "max")


def check_sense(sense: str) -> str:
    """Returns ``sense`` if it is "min" or "max", else raises a ``ValueError``."""
    if sense not in SENSES:
        raise ValueError(f"Argument `sense` must be 'min' or 'max'. Received: sense={sense!r}")
    return sense


class Solver:
    """A combinatorial solver ``y(costs) = argmin_{y in Y} <costs, y>`` (or argmax when ``sense == "max"``).

    Attributes:
        sense: "min" or "max", the direction of the linear objective.
        xla: True when the solver is pure TensorFlow and compiles with XLA.
        on_hyperplane: True when every solution has the same ``<1, y>``, so that P_mean / P_std keep the
            solution unchanged (paper section 3.4).
        validate_args: When True (default), costs are checked at run time for NaN/inf and the solver's own
            domain (e.g. non-negativity). Shapes are always checked at trace time. The value checks are
            no-ops inside ``jit_compile=True`` functions (XLA drops assertions).
    """

    sense: str = "min"
    xla: bool = True
    on_hyperplane: bool = False
    #: Minimum rank of ``costs`` including the batch axis.
    min_rank: int = 2

    def __init__(self, validate_args: bool = True, name: str | None = None):
        self.validate_args = bool(validate_args)
        self.name = name or _snake_case(type(self).__name__)

    # ----------------------------------------------------------------------------------------------- API
    def __call__(self, costs: tf.Tensor) -> tf.Tensor:
        """Solves every instance of the batch.

        Args:
            costs: Float tensor, batch first; the accepted shape is documented on each solver.

        Returns:
            The solution, same dtype as ``costs`` (0/1 indicators, ranks, ...).
        """
        costs = tf.convert_to_tensor(costs)
        if not costs.dtype.is_floating:
            raise TypeError(
                f"Solver {self.name!r} expects floating-point `costs`. Received: costs.dtype={costs.dtype.name}"
            )
        self.check_shape(costs.shape)
        if self.validate_args:
            costs = self.check_values(costs)
        return self._solve(costs)

    def _solve(self, costs: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def check_shape(self, shape: tf.TensorShape) -> None:
        """Raises ``ValueError`` at trace time when ``shape`` is not accepted."""
        if shape.rank is None:
            raise ValueError(f"Solver {self.name!r} needs `costs` of known rank. Received: shape={shape}")
        if shape.rank < self.min_rank:
            raise ValueError(
                f"Solver {self.name!r} expects `costs` of rank >= {self.min_rank} (batch first). "
                f"Received: costs.shape={shape}"
            )

    def check_values(self, costs: tf.Tensor) -> tf.Tensor:
        """Checks values at run time; returns ``costs`` (with the checks as control dependencies in graphs)."""
        return assert_finite(costs, f"Solver {self.name!r} received non-finite `costs` (NaN or inf).")

    def project_to_domain(self, costs: tf.Tensor) -> tf.Tensor:
        """Maps perturbed costs (e.g. BB's ``costs + lam * upstream``) back into the solver's domain.

        The default is the identity. Shortest path clamps at 0 (as the original BB code does), TSP symmetrises.
        """
        return costs

    # -------------------------------------------------------------------------------------- serialisation
    def get_config(self) -> dict[str, Any]:
        return {"validate_args": self.validate_args, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Solver:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class HostSolver(Solver):
    """A solver that runs numpy/scipy/OR-Tools code on the host through ``tf.numpy_function``.

    Subclasses implement :meth:`solve_one` (one instance, numpy float64 in, numpy out) and
    :meth:`output_shape`. Instances of a batch are solved in a thread pool of ``num_workers`` threads
    (default: the number of CPU cores); for batches smaller than 2 a plain loop is used.
    """

    xla = False

    def __init__(self, num_workers: int | None = None, validate_args: bool = True, name: str | None = None):
        super().__init__(validate_args=validate_args, name=name)
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
            raise ValueError(
                f"Argument `num_workers` must be a positive integer or None. Received: num_workers={num_workers!r}"
            )
        self.num_workers = num_workers

    def solve_one(self, costs: np.ndarray) -> np.ndarray:
        """Solves one instance; ``costs`` has the per-instance shape (no batch axis), dtype float64."""
        raise NotImplementedError

    def output_shape(self, instance_shape: tf.TensorShape) -> tf.TensorShape:
        """Per-instance output shape for a per-instance input shape. Default: the same shape."""
        return instance_shape

    def check_instance(self, costs: np.ndarray) -> None:
        """Host-side value checks of one instance (raise ``ValueError``). Default: none beyond finiteness."""

    def solve_batch(self, costs: np.ndarray) -> np.ndarray:
        """Solves a numpy batch ``[B, ...]``; returns ``[B, ...]`` in the input's dtype."""
        costs = np.asarray(costs)
        dtype = costs.dtype
        batch = costs.astype(np.float64)
        if self.validate_args:
            if not np.all(np.isfinite(batch)):
                bad = int(np.argwhere(~np.isfinite(batch).reshape(len(batch), -1).all(axis=1))[0, 0])
                raise ValueError(f"Solver {self.name!r} received non-finite `costs` (NaN or inf) in instance {bad}.")
            for instance in batch:
                self.check_instance(instance)
        solutions = self._solve_instances(batch)
        if not solutions:
            out_shape = self.output_shape(tf.TensorShape(costs.shape[1:]))
            return np.zeros((0, *out_shape.as_list()), dtype=dtype)
        return np.stack(solutions).astype(dtype)

    def _solve_instances(self, batch: np.ndarray) -> list[np.ndarray]:
        """``solve_one`` over the instances of a float64 batch, in a thread pool (a plain loop below 2)."""
        workers = self.num_workers or os.cpu_count() or 1
        if len(batch) < 2 or workers == 1:
            return [self.solve_one(c) for c in batch]
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(batch))) as pool:
            return list(pool.map(self.solve_one, batch))

    def _solve(self, costs: tf.Tensor) -> tf.Tensor:
        out_shape = tf.TensorShape([costs.shape[0]]).concatenate(self.output_shape(costs.shape[1:]))
        if tf.executing_eagerly():  # direct call: host errors surface as the ValueError they are
            return tf.convert_to_tensor(self.solve_batch(costs.numpy()))
        op_name = re.sub(r"[^A-Za-z0-9_.]", "_", self.name).strip("_") or "host_solver"
        solution = tf.numpy_function(self.solve_batch, [costs], costs.dtype, stateful=False, name=op_name)
        solution.set_shape(out_shape)
        return solution

    def check_values(self, costs: tf.Tensor) -> tf.Tensor:
        # Values are checked on the host in `solve_batch`, with per-instance messages.
        return costs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_workers": self.num_workers}


def assert_finite(x: tf.Tensor, message: str) -> tf.Tensor:
    """Raises ``ValueError`` (eager) or ``InvalidArgumentError`` (graph) if ``x`` has NaN/inf; returns ``x``."""
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            raise ValueError(message)
        return x
    with tf.control_dependencies([tf.debugging.assert_all_finite(x, message)]):
        return tf.identity(x)


def assert_nonnegative(x: tf.Tensor, message: str) -> tf.Tensor:
    """Raises ``ValueError`` (eager) or ``InvalidArgumentError`` (graph) if ``x`` has negative entries."""
    if tf.executing_eagerly():
        if bool(tf.reduce_any(x < 0)):
            raise ValueError(f"{message} Received: min(costs)={float(tf.reduce_min(x))}")
        return x
    with tf.control_dependencies([tf.debugging.assert_non_negative(x, message=message)]):
        return tf.identity(x)


def register(cls):
    """Registers a solver class with Keras serialisation under the package name ``identity_tf``."""
    return keras.saving.register_keras_serializable(package="identity_tf")(cls)


def serialize(solver: Solver) -> dict:
    """Keras-serialises a solver (used by layers that hold one)."""
    return keras.saving.serialize_keras_object(solver)


def deserialize(config: dict | Solver) -> Solver:
    """Rebuilds a solver from :func:`serialize`'s output (a solver passes through unchanged)."""
    if isinstance(config, Solver):
        return config
    solver = keras.saving.deserialize_keras_object(config)
    if not isinstance(solver, Solver):
        raise TypeError(f"Expected a serialised identity_tf solver. Received: {config!r}")
    return solver


def _snake_case(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
