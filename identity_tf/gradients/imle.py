"""Implicit Maximum-Likelihood Estimation, I-MLE (Niepert et al., 2021), with perturb-and-MAP noise."""

from __future__ import annotations

import keras
import tensorflow as tf

from identity_tf import _structured
from identity_tf import noise as noise_lib
from identity_tf.gradients.base import (
    GradientMethod,
    check_num_samples,
    check_positive,
    register,
    sign,
    solve_samples,
    zeros_if_none,
)


def imle(solver, costs: tf.Tensor, lam: float = 10.0, noise=None, num_samples: int = 1, seed=None) -> tf.Tensor:
    """Perturb-and-MAP sampling with the I-MLE gradient.

    In the argmax form (``theta = costs`` for a "max" solver, ``-costs`` for a "min" one): the forward pass
    returns ``mean_s y(theta + eps_s)`` with ``eps_s`` drawn once, outside the custom gradient, and reused on the
    backward pass: ``theta' = theta - lam * upstream`` and the gradient is
    ``mean_s (y(theta + eps_s) - y(theta' + eps_s)) / lam``. All ``num_samples`` solves of a pass are one batched
    solver call. Structured costs (graph matching): noise on every floating-point part, each part's own rule.

    Args:
        solver: Any solver.
        costs: Costs (logits for top-k), batch first.
        lam: Target-distribution strength lambda > 0.
        noise: A noise object with ``sample(shape, seed, dtype)`` or a name ("sum_of_gamma", "gumbel",
            "normal"); default ``SumOfGamma(k=10, tau=10, s=10)`` (paper eq. 23).
        num_samples: Perturbation samples per example.
        seed: See :mod:`identity_tf.noise`.

    Example:
    >>> import identity_tf as itf
    >>> y = itf.gradients.imle(itf.solvers.TopK(k=2), [[0.1, 5.0, 0.3, 9.0]], noise=itf.noise.Gumbel(0.01), seed=0)
    >>> y.numpy()
    array([[0., 1., 0., 1.]], dtype=float32)
    """
    lam = check_positive("lam", lam)
    num_samples = check_num_samples(num_samples)
    noise = noise_lib.SumOfGamma() if noise is None else noise_lib.get(noise)
    structured = _structured.is_structured(costs)
    parts, rebuild = _structured.split(costs)
    direction = sign(solver)
    # [S, B, ...] noise per part, drawn outside the custom gradient so the backward pass reuses it.
    eps = _structured.sample_parts(
        lambda shape: noise.sample(shape, seed=seed, dtype=parts[0].dtype), parts, leading=[num_samples]
    )

    def perturbed(parts, shift):
        # costs of the perturbed problems: direction * (theta + shift) = costs + direction * shift, [S, B, ...]
        return rebuild([c[tf.newaxis] + direction * s for c, s in zip(parts, shift)])

    @tf.custom_gradient
    def forward(*parts):
        samples = _structured.parts_of(solve_samples(solver, perturbed(parts, eps)))  # [S, B, ...] per part

        def backward(*upstream):
            upstream = zeros_if_none(upstream, parts)
            shift = [e - lam * u[tf.newaxis] for e, u in zip(eps, upstream)]
            targets = _structured.parts_of(solve_samples(solver, perturbed(parts, shift)))
            return [direction * tf.reduce_mean(y - t, axis=0) / lam for y, t in zip(samples, targets)]

        mean = [tf.reduce_mean(y, axis=0) for y in samples]
        return (tuple(mean) if structured else mean[0]), backward

    return forward(*parts)


@register
class IMLE(GradientMethod):
    """Config object for :func:`imle`.

    Args:
        lam: Target-distribution strength lambda.
        noise: Noise object or name (default: ``SumOfGamma()``, eq. 23).
        num_samples: Samples per example.
        sample_at_inference: When False (default), a layer returns the noise-free solution at inference.
    """

    stochastic = True

    def __init__(self, lam: float = 10.0, noise=None, num_samples: int = 1, sample_at_inference: bool = False):
        self.lam = check_positive("lam", lam)
        self.noise = noise_lib.SumOfGamma() if noise is None else noise_lib.get(noise)
        self.num_samples = check_num_samples(num_samples)
        self.sample_at_inference = bool(sample_at_inference)

    def __call__(self, solver, costs, seed=None, training=True):
        if not training and not self.sample_at_inference:
            return solver(costs)
        return imle(solver, costs, lam=self.lam, noise=self.noise, num_samples=self.num_samples, seed=seed)

    def get_config(self):
        return {
            "lam": self.lam,
            "noise": keras.saving.serialize_keras_object(self.noise),
            "num_samples": self.num_samples,
            "sample_at_inference": self.sample_at_inference,
        }
