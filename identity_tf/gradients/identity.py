"""The Identity method (paper section 3): the solver is a (negated) identity on the backward pass."""

from __future__ import annotations

import tensorflow as tf

from identity_tf import _structured
from identity_tf.gradients.base import GradientMethod, register, sign, solve, zeros_if_none


def identity(solver, costs: tf.Tensor) -> tf.Tensor:
    """Solves on the forward pass; on the backward pass returns ``-upstream`` ("min" solver) or ``+upstream``
    ("max" solver), paper eq. 3. No solver call and no hyperparameter on the backward pass.

    Put projections (:mod:`identity_tf.projections`) and margin noise *before* this call; autodiff then
    applies ``P'(costs)^T`` to the update (paper eq. 11).

    Structured costs (a tuple such as graph matching's ``(unary, pairwise, edges1, edges2)``): each
    floating-point part gets ``-/+`` the upstream gradient of its solution part (``x`` for ``unary``, ``z``
    for ``pairwise``); a solution part the loss does not use gives its cost part a zero gradient.

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
    parts, rebuild = _structured.split(costs)
    direction = sign(solver)

    @tf.custom_gradient
    def forward(*parts):
        def backward(*upstream):
            return [direction * u for u in zeros_if_none(upstream, parts)]

        return solve(solver, rebuild(parts)), backward

    return forward(*parts)


@register
class Identity(GradientMethod):
    """Config object for :func:`identity` (no hyperparameters)."""

    def __call__(self, solver, costs, seed=None, training=True):
        return identity(solver, costs)
