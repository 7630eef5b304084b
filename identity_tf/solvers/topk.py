"""Top-k selection as a linear program over k-hot vectors."""

from __future__ import annotations

import tensorflow as tf

from identity_tf.solvers.base import Solver, register


@register
class TopK(Solver):
    """k-hot indicator of the ``k`` largest entries along the last axis: ``argmax_{y k-hot} <costs, y>``.

    Exactly ``k`` ones per row, also when values tie (the lowest index wins a tie; the original I-MLE code's
    ``>=`` threshold returns more than k ones on ties).

    Args:
        k: Number of entries to select, ``1 <= k <= n``.
        validate_args: Check costs for NaN/inf at run time (outside XLA).

    Input shape: ``[B, ..., n]``. Output shape: the same, 0/1 in the costs' dtype.

    Example:
    >>> import identity_tf as itf
    >>> itf.solvers.TopK(k=2)([[0.1, 0.7, 0.3, 0.9]]).numpy()
    array([[0., 1., 0., 1.]], dtype=float32)
    """

    sense = "max"
    on_hyperplane = True

    def __init__(self, k: int, validate_args: bool = True, name: str | None = None):
        super().__init__(validate_args=validate_args, name=name)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Argument `k` must be a positive integer. Received: k={k!r}")
        self.k = k

    def check_shape(self, shape):
        super().check_shape(shape)
        n = shape[-1]
        if n is not None and self.k > n:
            raise ValueError(f"TopK needs k <= n (the size of the last axis). Received: k={self.k}, n={n}")

    def _solve(self, costs):
        n = tf.shape(costs)[-1]
        canonical = tf.where(costs == 0, tf.zeros_like(costs), costs)  # every zero as +0.0
        _, indices = tf.math.top_k(canonical, k=self.k, sorted=False)  # [..., k]
        # [..., k, n] one-hot rows summed over the k picks -> [..., n]
        return tf.reduce_sum(tf.one_hot(indices, n, dtype=costs.dtype), axis=-2)

    def get_config(self):
        return {**super().get_config(), "k": self.k}
