"""Keras layer applying a cost projection (paper section 3.4)."""

from __future__ import annotations

import keras

from identity_tf import projections
from identity_tf.solvers import base as solvers_base


@keras.saving.register_keras_serializable(package="identity_tf")
class ProjectionLayer(keras.layers.Layer):
    """Projects costs per example before a solver: "mean", "norm", "std", "auto" or None (pass-through).

    The projection leaves the solver's solution unchanged and, differentiated by autodiff, removes the part of
    the Identity update that cannot change the solution (paper eq. 10-11).

    Args:
        projection: "mean", "norm", "std", "auto" (std when ``solver.on_hyperplane`` else norm) or None.
        solver: The solver that follows; required for "auto", and used to reject "mean"/"std" for solvers whose
            solutions are not on a hyperplane.
        epsilon: Norm guard: ``||w||`` is replaced by ``max(||w||, epsilon)``.

    Structured costs (a tuple such as graph matching's ``(unary, pairwise, edges1, edges2)``) are projected
    jointly over their floating-point parts (see :mod:`identity_tf.projections`).

    Input shape: ``[B, ...]`` (or a tuple of shapes). Output shape: the same.

    Example:
    >>> import numpy as np
    >>> import identity_tf as itf
    >>> itf.layers.ProjectionLayer("mean")(np.array([[1.0, 2.0, 6.0]], "float32")).numpy()
    array([[-2., -1.,  3.]], dtype=float32)
    """

    def __init__(self, projection="std", solver=None, epsilon: float = projections.EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.solver = None if solver is None else solvers_base.deserialize(solver)
        self.fn = projections.get(projection, self.solver)  # validates the name
        self.projection = projection
        self.epsilon = float(epsilon)

    def call(self, costs):
        if self.fn is None:
            return costs
        if isinstance(costs, list):  # Keras may hand structured costs over as a list
            costs = tuple(costs)
        if self.fn is projections.mean:
            return self.fn(costs)
        return self.fn(costs, epsilon=self.epsilon)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "projection": self.projection,
            "solver": None if self.solver is None else solvers_base.serialize(self.solver),
            "epsilon": self.epsilon,
        }
