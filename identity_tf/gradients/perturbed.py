"""Perturbed optimizers (Berthet et al., 2020) and their Fenchel-Young loss."""

from __future__ import annotations

import tensorflow as tf

from identity_tf import noise as noise_lib
from identity_tf.gradients.base import (
    GradientMethod,
    check_num_samples,
    check_positive,
    per_example_dot,
    register,
    sign,
    solve_samples,
)

NOISES = ("normal", "gumbel")


def _draw(costs, num_samples, noise, seed):
    if noise not in NOISES:
        raise ValueError(f"Argument `noise` must be one of {NOISES}. Received: noise={noise!r}")
    shape = tf.concat([[num_samples], tf.shape(costs)], axis=0)  # [S, B, ...]
    z = (noise_lib.Normal() if noise == "normal" else noise_lib.Gumbel()).sample(shape, seed=seed, dtype=costs.dtype)
    # gradient of the noise's negative log-density nu: z for the normal, 1 - exp(-z) for the Gumbel
    grad_nu = z if noise == "normal" else 1.0 - tf.exp(-z)
    return z, grad_nu


def perturbed(
    solver, costs: tf.Tensor, sigma: float = 0.1, num_samples: int = 10, noise: str = "normal", seed=None
) -> tf.Tensor:
    """The perturbed optimizer ``y_sigma(theta) = E[y(theta + sigma Z)]`` and its Monte-Carlo Jacobian.

    In the argmax form (``theta = costs`` for "max" solvers, ``-costs`` for "min"): the forward pass returns the
    average of ``num_samples`` perturbed solutions; the backward pass returns
    ``E[<y(theta + sigma Z), upstream> grad_nu(Z)] / sigma`` (``grad_nu(z) = z`` for normal noise,
    ``1 - exp(-z)`` for Gumbel noise), with the same noise as the forward pass.

    Args:
        solver: Any solver.
        costs: Costs, batch first.
        sigma: Noise scale > 0.
        num_samples: Monte-Carlo samples.
        noise: "normal" or "gumbel".
        seed: See :mod:`identity_tf.noise`.

    Example:
    >>> import identity_tf as itf
    >>> y = itf.gradients.perturbed(itf.solvers.Argmax(), [[0.0, 10.0]], sigma=0.1, num_samples=4, seed=0)
    >>> y.numpy()
    array([[0., 1.]], dtype=float32)
    """
    sigma = check_positive("sigma", sigma)
    num_samples = check_num_samples(num_samples)
    costs = tf.convert_to_tensor(costs)
    direction = sign(solver)
    z, grad_nu = _draw(costs, num_samples, noise, seed)

    @tf.custom_gradient
    def forward(costs):
        samples = solve_samples(solver, costs[tf.newaxis] + direction * sigma * z)  # [S, B, ...]

        def backward(upstream):
            weights = per_example_dot(samples, upstream[tf.newaxis])  # [S, B]
            # [S, B] -> [S, B, 1, ...] to scale the noise gradients [S, B, ...]
            weights = tf.reshape(weights, tf.concat([tf.shape(weights), tf.ones([costs.shape.rank - 1], tf.int32)], 0))
            return direction * tf.reduce_mean(weights * grad_nu, axis=0) / sigma

        return tf.reduce_mean(samples, axis=0), backward

    return forward(costs)


def fenchel_young_loss(
    solver,
    costs: tf.Tensor,
    y_true: tf.Tensor,
    sigma: float = 0.1,
    num_samples: int = 10,
    noise: str = "normal",
    seed=None,
) -> tf.Tensor:
    """Perturbed Fenchel-Young loss per example, ``[B]`` (Berthet et al., 2020, eq. 6).

    In the argmax form, ``L(theta; y) = E[max_y' <theta + sigma Z, y'>] - <theta, y>`` (up to a constant in
    ``theta``), whose gradient is ``y_sigma(theta) - y`` (Monte-Carlo, same noise on both passes). It is >= 0 in
    expectation and needs no backward rule through the solver.

    Example:
    >>> import identity_tf as itf
    >>> loss = itf.gradients.fenchel_young_loss(itf.solvers.Argmax(), [[0.0, 10.0]], [[0.0, 1.0]], seed=0)
    >>> loss.shape
    TensorShape([1])
    """
    sigma = check_positive("sigma", sigma)
    num_samples = check_num_samples(num_samples)
    costs = tf.convert_to_tensor(costs)
    y_true = tf.cast(y_true, costs.dtype)
    direction = sign(solver)
    z, _ = _draw(costs, num_samples, noise, seed)
    axes = list(range(1, costs.shape.rank))

    @tf.custom_gradient
    def forward(costs):
        theta = direction * costs
        samples = solve_samples(solver, costs[tf.newaxis] + direction * sigma * z)  # [S, B, ...]
        # E[<theta + sigma Z, y_z>] - <theta, y_true>, per example -> [B]
        value = tf.reduce_mean(per_example_dot(theta[tf.newaxis] + sigma * z, samples), axis=0)
        value -= tf.reduce_sum(theta * y_true, axis=axes)

        def backward(upstream):  # upstream: [B]
            upstream = tf.reshape(upstream, tf.concat([tf.shape(upstream), tf.ones([len(axes)], tf.int32)], 0))
            return direction * upstream * (tf.reduce_mean(samples, axis=0) - y_true)

        return value, backward

    return forward(costs)


@register
class Perturbed(GradientMethod):
    """Config object for :func:`perturbed`.

    Args:
        sigma: Noise scale.
        num_samples: Monte-Carlo samples.
        noise: "normal" or "gumbel".
        sample_at_inference: When False (default), a layer returns the noise-free solution at inference.
    """

    stochastic = True

    def __init__(
        self, sigma: float = 0.1, num_samples: int = 10, noise: str = "normal", sample_at_inference: bool = False
    ):
        self.sigma = check_positive("sigma", sigma)
        self.num_samples = check_num_samples(num_samples)
        if noise not in NOISES:
            raise ValueError(f"Argument `noise` must be one of {NOISES}. Received: noise={noise!r}")
        self.noise = noise
        self.sample_at_inference = bool(sample_at_inference)

    def __call__(self, solver, costs, seed=None, training=True):
        if not training and not self.sample_at_inference:
            return solver(costs)
        return perturbed(solver, costs, sigma=self.sigma, num_samples=self.num_samples, noise=self.noise, seed=seed)

    def get_config(self):
        return {
            "sigma": self.sigma,
            "num_samples": self.num_samples,
            "noise": self.noise,
            "sample_at_inference": self.sample_at_inference,
        }
