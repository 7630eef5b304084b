"""Wrap any user numpy function as a solver."""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from identity_tf.solvers.base import HostSolver, check_sense, register


@register
class NumpySolver(HostSolver):
    """A user's own solver: ``fn(costs_one_instance) -> solution_one_instance`` in numpy.

    Build it with :func:`from_numpy`. The batch is solved in a thread pool over instances. ``fn`` receives a
    float64 array without the batch axis and must return an array of ``output_shape``.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        sense: str = "min",
        output_shape: Sequence[int] | None = None,
        on_hyperplane: bool = False,
        num_workers: int | None = None,
        validate_args: bool = True,
        name: str | None = None,
    ):
        if isinstance(fn, dict):  # from a Keras config
            fn = keras.saving.deserialize_keras_object(fn)
        if not callable(fn):
            raise TypeError(f"Argument `fn` must be callable. Received: fn={fn!r}")
        super().__init__(
            num_workers=num_workers, validate_args=validate_args, name=name or getattr(fn, "__name__", None)
        )
        self.fn = fn
        self.sense = check_sense(sense)
        self.on_hyperplane = bool(on_hyperplane)
        self._output_shape = None if output_shape is None else tuple(int(d) for d in output_shape)

    def output_shape(self, instance_shape: tf.TensorShape) -> tf.TensorShape:
        return instance_shape if self._output_shape is None else tf.TensorShape(self._output_shape)

    def solve_one(self, costs: np.ndarray) -> np.ndarray:
        solution = np.asarray(self.fn(costs), dtype=np.float64)
        expected = tuple(self.output_shape(tf.TensorShape(costs.shape)).as_list())
        if solution.shape != expected:
            raise ValueError(
                f"Solver function {self.name!r} returned the wrong shape: expected {expected}. "
                f"Received: solution.shape={solution.shape}"
            )
        return solution

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "fn": keras.saving.serialize_keras_object(self.fn),
            "sense": self.sense,
            "output_shape": self._output_shape,
            "on_hyperplane": self.on_hyperplane,
        }


def from_numpy(
    fn: Callable[[np.ndarray], np.ndarray],
    sense: str = "min",
    output_shape: Sequence[int] | None = None,
    on_hyperplane: bool = False,
    name: str | None = None,
    num_workers: int | None = None,
) -> NumpySolver:
    """Makes a solver from a function that solves one instance in numpy.

    Args:
        fn: ``costs [*instance_shape] (float64) -> solution [*output_shape]``.
        sense: "min" if ``fn`` minimises ``<costs, y>``, "max" if it maximises.
        output_shape: Per-instance output shape; default: the input's per-instance shape.
        on_hyperplane: Declare that every solution has the same ``<1, y>``.
        name: Name shown in errors and graphs; default: ``fn.__name__``.
        num_workers: Threads over the batch (default: number of CPU cores).

    Returns:
        A :class:`NumpySolver`. To save it in a ``.keras`` file, ``fn`` must be a named function registered
        with ``keras.saving.register_keras_serializable``.

    Example:
    >>> import numpy as np
    >>> import identity_tf as itf
    >>> cheapest = itf.solvers.from_numpy(lambda c: (c == c.min()).astype(float), sense="min")
    >>> cheapest([[3.0, 1.0, 2.0]]).numpy()
    array([[0., 1., 0.]], dtype=float32)
    """
    return NumpySolver(
        fn, sense=sense, output_shape=output_shape, on_hyperplane=on_hyperplane, name=name, num_workers=num_workers
    )
