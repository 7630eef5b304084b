"""The Identity method (paper section 3): the solver is a (negated) identity on the backward pass."""

from __future__ import annotations

import tensorflow as tf

from identity_tf.gradients.base import GradientMethod, register, sign, solve


def identity(solver, costs: tf.Tensor) -> tf.Tensor:
    """Solves on the forward pass; on the backward pass returns ``-upstream`` ("min" solver) or ``+upstream``
    ("max" solver), paper eq. 3. No solver call and no hyperparameter on the backward pass.

    Put projections (:mod:`identity_tf.projections`) and margin noise *before* this call; autodiff then
    applies ``P'(costs)^T`` to the update (paper eq. 11).

    Example:
    >>> import tensorflow as tf
    >>> import identity_tf as itf
    >>> costs = tf.constant([[0.1, 0.7, 0.3]])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(costs)
    ...     y = itf.gradients.identity(itf.solvers.Ranking(), costs)
    ...     loss = tf.reduce_sum(y * [[1.0, 2.0, 3.0]])
    >>> tape.gradient(loss, costs).numpy()
    array([[-1., -2., -3.]], dtype=float32)
    """
    costs = tf.convert_to_tensor(costs)
    direction = sign(solver)

    @tf.custom_gradient
    def forward(costs):
        def backward(upstream):
            return direction * upstream

        return solve(solver, costs), backward

    return forward(costs)


@register
class Identity(GradientMethod):
    """Config object for :func:`identity` (no hyperparameters)."""

    def __call__(self, solver, costs, seed=None, training=True):
        return identity(solver, costs)
