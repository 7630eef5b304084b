"""Arg-max as a linear program over one-hot vectors."""

from __future__ import annotations

import tensorflow as tf

from identity_tf.solvers.base import Solver, register


@register
class Argmax(Solver):
    """One-hot indicator of the largest entry along the last axis (the lowest index wins a tie).

    Input shape: ``[B, ..., n]``. Output shape: the same, 0/1 in the costs' dtype.

    Example:
    >>> import identity_tf as itf
    >>> itf.solvers.Argmax()([[0.1, 0.7, 0.3]]).numpy()
    array([[0., 1., 0.]], dtype=float32)
    """

    sense = "max"
    on_hyperplane = True

    def _solve(self, costs):
        index = tf.argmax(tf.where(costs == 0, tf.zeros_like(costs), costs), axis=-1)  # every zero as +0.0
        return tf.one_hot(index, tf.shape(costs)[-1], dtype=costs.dtype)
