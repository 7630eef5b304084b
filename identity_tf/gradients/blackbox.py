"""Blackbox Backpropagation (Vlastelica et al., 2020): one more solver call on perturbed costs."""

from __future__ import annotations

import tensorflow as tf

from identity_tf import _structured
from identity_tf.gradients.base import GradientMethod, check_positive, register, sign, solve, zeros_if_none


def blackbox(solver, costs: tf.Tensor, lam: float = 20.0) -> tf.Tensor:
    """Solves on the forward pass; the backward pass interpolates the loss with a second solve.

    For a "min" solver: ``costs' = costs + lam * upstream`` and the gradient is ``(y(costs') - y(costs)) / lam``.
    For a "max" solver: ``costs' = costs - lam * upstream`` and ``(y(costs) - y(costs')) / lam``. The perturbed
    costs are mapped into the solver's domain first (``solver.project_to_domain``: shortest path clamps at 0 as
    the original code does, TSP symmetrises). Structured costs (graph matching): every floating-point part is
    perturbed by its solution part's upstream gradient and gets the difference of that part, one re-solve.

    Args:
        solver: Any solver.
        costs: Costs, batch first.
        lam: Interpolation strength lambda > 0.

    Example:
    >>> import tensorflow as tf
    >>> import identity_tf as itf
    >>> costs = tf.constant([[0.1, 0.7, 0.3]])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(costs)
    ...     y = itf.gradients.blackbox(itf.solvers.Argmax(), costs, lam=1.0)
    ...     loss = tf.reduce_sum(y * [[-1.0, 0.0, 0.0]])
    >>> tape.gradient(loss, costs).numpy()
    array([[-1.,  1.,  0.]], dtype=float32)
    """
    lam = check_positive("lam", lam)
    parts, rebuild = _structured.split(costs)
    direction = sign(solver)

    @tf.custom_gradient
    def forward(*parts):
        solution = solve(solver, rebuild(parts))

        def backward(*upstream):
            upstream = zeros_if_none(upstream, parts)
            perturbed = solver.project_to_domain(rebuild([c - direction * lam * u for c, u in zip(parts, upstream)]))
            target = _structured.parts_of(solve(solver, perturbed))
            return [direction * (y - t) / lam for y, t in zip(_structured.parts_of(solution), target)]

        return solution, backward

    return forward(*parts)


@register
class Blackbox(GradientMethod):
    """Config object for :func:`blackbox`.

    Args:
        lam: Interpolation strength lambda > 0 (paper: 20 for TSP and shortest path, 80 for graph matching).
    """

    def __init__(self, lam: float = 20.0):
        self.lam = check_positive("lam", lam)

    def __call__(self, solver, costs, seed=None, training=True):
        return blackbox(solver, costs, lam=self.lam)

    def get_config(self):
        return {"lam": self.lam}
