"""Perturbed optimizers (Berthet et al., 2020) and their Fenchel-Young loss."""

from __future__ import annotations

import tensorflow as tf

from identity_tf import _structured
from identity_tf import noise as noise_lib
from identity_tf.gradients.base import (
    GradientMethod,
    check_num_samples,
    check_positive,
    per_example_dot,
    register,
    sign,
    solve_samples,
    zeros_if_none,
)

NOISES = ("normal", "gumbel")


def _draw(parts, num_samples, noise, seed):
    """Noise ``z`` and ``grad nu(z)`` for every cost part, ``[S, B, ...]`` each (one joint draw, see
    :func:`identity_tf._structured.sample_parts`)."""
    if noise not in NOISES:
        raise ValueError(f"Argument `noise` must be one of {NOISES}. Received: noise={noise!r}")
    source = noise_lib.Normal() if noise == "normal" else noise_lib.Gumbel()
    z = _structured.sample_parts(
        lambda shape: source.sample(shape, seed=seed, dtype=parts[0].dtype), parts, leading=[num_samples]
    )
    # gradient of the noise's negative log-density nu: z for the normal, 1 - exp(-z) for the Gumbel
    grad_nu = z if noise == "normal" else [1.0 - tf.exp(-zp) for zp in z]
    return z, grad_nu


def perturbed(
    solver, costs: tf.Tensor, sigma: float = 0.1, num_samples: int = 10, noise: str = "normal", seed=None
) -> tf.Tensor:
    """The perturbed optimizer ``y_sigma(theta) = E[y(theta + sigma Z)]`` and its Monte-Carlo Jacobian.

    In the argmax form (``theta = costs`` for "max" solvers, ``-costs`` for "min"): the forward pass returns the
    average of ``num_samples`` perturbed solutions; the backward pass returns
    ``E[<y(theta + sigma Z), upstream> grad_nu(Z)] / sigma`` (``grad_nu(z) = z`` for normal noise,
    ``1 - exp(-z)`` for Gumbel noise), with the same noise as the forward pass. Structured costs (graph
    matching): noise on every floating-point part, ``<y, upstream>`` summed over the solution parts.

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
    structured = _structured.is_structured(costs)
    parts, rebuild = _structured.split(costs)
    direction = sign(solver)
    z, grad_nu = _draw(parts, num_samples, noise, seed)

    @tf.custom_gradient
    def forward(*parts):
        noisy = rebuild([c[tf.newaxis] + direction * sigma * zp for c, zp in zip(parts, z)])
        samples = _structured.parts_of(solve_samples(solver, noisy))  # [S, B, ...] per part

        def backward(*upstream):
            upstream = zeros_if_none(upstream, parts)
            weights = per_example_dot(samples, [u[tf.newaxis] for u in upstream])  # [S, B]
            grads = []
            for c, g in zip(parts, grad_nu):
                # [S, B] -> [S, B, 1, ...] to scale the noise gradients [S, B, ...]
                w = tf.reshape(weights, tf.concat([tf.shape(weights), tf.ones([c.shape.rank - 1], tf.int32)], 0))
                grads.append(direction * tf.reduce_mean(w * g, axis=0) / sigma)
            return grads

        mean = [tf.reduce_mean(y, axis=0) for y in samples]
        return (tuple(mean) if structured else mean[0]), backward

    return forward(*parts)


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
    expectation and needs no backward rule through the solver. Structured costs (graph matching): ``y_true``
    is the tuple of true solution parts (e.g. ``(x*, z*)``) and the inner products sum over the parts.

    Example:
    >>> import identity_tf as itf
    >>> loss = itf.gradients.fenchel_young_loss(itf.solvers.Argmax(), [[0.0, 10.0]], [[0.0, 1.0]], seed=0)
    >>> loss.shape
    TensorShape([1])
    """
    sigma = check_positive("sigma", sigma)
    num_samples = check_num_samples(num_samples)
    structured = _structured.is_structured(costs)
    parts, rebuild = _structured.split(costs)
    y_true = [tf.cast(y, parts[0].dtype) for y in (tuple(y_true) if structured else (y_true,))]
    direction = sign(solver)
    z, _ = _draw(parts, num_samples, noise, seed)

    @tf.custom_gradient
    def forward(*parts):
        theta = [direction * c for c in parts]
        noisy = rebuild([c[tf.newaxis] + direction * sigma * zp for c, zp in zip(parts, z)])
        samples = _structured.parts_of(solve_samples(solver, noisy))  # [S, B, ...] per part
        # E[<theta + sigma Z, y_z>] - <theta, y_true>, per example (summed over the parts) -> [B]
        value = tf.reduce_mean(per_example_dot([t[tf.newaxis] + sigma * zp for t, zp in zip(theta, z)], samples), 0)
        value -= tf.add_n([tf.reduce_sum(t * y, axis=list(range(1, t.shape.rank))) for t, y in zip(theta, y_true)])

        def backward(upstream):  # upstream: [B]
            grads = []
            for c, y, ys in zip(parts, y_true, samples):
                u = tf.reshape(upstream, tf.concat([tf.shape(upstream), tf.ones([c.shape.rank - 1], tf.int32)], 0))
                grads.append(direction * u * (tf.reduce_mean(ys, axis=0) - y))
            return grads

        return value, backward

    return forward(*parts)


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
