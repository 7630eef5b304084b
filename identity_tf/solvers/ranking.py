"""Ranking as a linear program over permutations of 1..n."""

from __future__ import annotations

import tensorflow as tf

from identity_tf.solvers.base import Solver, register


@register
class Ranking(Solver):
    """Ranks of the scores along the last axis: the largest score gets rank 1.

    The ranks ``r`` minimise ``<costs, r>`` over all permutations of ``1..n`` (rearrangement inequality), so the
    solver has sense "min" and every solution has ``<1, r> = n (n + 1) / 2`` (on a hyperplane). Ties are broken
    by position (stable sort). Computed with a double argsort. Note: sorting under XLA on CPU is about 4x
    slower than in graph mode; prefer a plain ``tf.function`` on CPU.

    Args:
        normalize: Divide the ranks by ``n`` (ranks in ``(0, 1]``).
        validate_args: Check costs for NaN/inf at run time (outside XLA).

    Input shape: ``[B, ..., n]``. Output shape: the same, ranks in the costs' dtype.

    Example:
    >>> import identity_tf as itf
    >>> itf.solvers.Ranking()([[0.1, 0.7, 0.3]]).numpy()
    array([[3., 1., 2.]], dtype=float32)
    """

    sense = "min"
    on_hyperplane = True

    def __init__(self, normalize: bool = False, validate_args: bool = True, name: str | None = None):
        super().__init__(validate_args=validate_args, name=name)
        self.normalize = bool(normalize)

    def _solve(self, costs):
        # Ascending stable sort of -costs, with every zero as +0.0: XLA orders -0.0 before +0.0, and its
        # descending sort does not keep ties in index order.
        negated = tf.where(costs == 0, tf.zeros_like(costs), -costs)
        order = tf.argsort(negated, axis=-1, stable=True)
        ranks = tf.cast(tf.argsort(order, axis=-1, stable=True) + 1, costs.dtype)
        if self.normalize:
            ranks = ranks / tf.cast(tf.shape(costs)[-1], costs.dtype)
        return ranks

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize}
