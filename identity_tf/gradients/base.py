"""Shared pieces of the gradient methods: the sense convention and the config-object base class."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from identity_tf import _structured


def sign(solver) -> float:
    """``+1`` for a "max" solver, ``-1`` for a "min" solver.

    With ``theta = sign * costs`` every solver is an argmax ``y(theta) = argmax <theta, y>``; the gradient
    methods are written in that form and map back with the same sign.
    """
    return 1.0 if solver.sense == "max" else -1.0


def solve(solver, costs: tf.Tensor) -> tf.Tensor:
    """Calls the solver; the solution is returned in the costs' dtype.

    Structured costs (a tuple, see :mod:`identity_tf._structured`) give a tuple of solution parts, each in the
    dtype of the first floating-point cost part.
    """
    if _structured.is_structured(costs):
        dtype = _structured.split(costs)[0][0].dtype
        return tuple(tf.cast(part, dtype) for part in _structured.parts_of(solver(costs)))
    return tf.cast(solver(costs), costs.dtype)


def solve_samples(solver, samples):
    """Solves ``[S, B, ...]`` perturbed costs in a single batched call; returns ``[S, B, ...]``.

    The perturbed costs are first mapped into the solver's domain (``solver.project_to_domain``), as the
    Blackbox method does: e.g. noisy shortest-path costs are clamped at 0. Structured costs: a tuple whose
    floating-point parts are ``[S, B, ...]`` and whose structure parts are ``[B, ...]`` (repeated for every
    sample here); the solution parts come back as ``[S, B, ...]``.
    """
    if not _structured.is_structured(samples):
        samples = solver.project_to_domain(samples)
        return _unflatten(solve(solver, _flatten(samples)), tf.shape(samples))
    samples = _structured.convert(samples)
    parts, _ = _structured.split(samples)
    num_samples = tf.shape(parts[0])[0]
    flat = tuple(
        _flatten(c) if c.dtype.is_floating else _flatten(tf.broadcast_to(c, tf.concat([[num_samples], tf.shape(c)], 0)))
        for c in samples
    )
    solution = solve(solver, solver.project_to_domain(flat))
    return tuple(
        _unflatten(y, tf.concat([[num_samples], tf.shape(y)[:1] // num_samples, tf.shape(y)[1:]], 0)) for y in solution
    )


def _flatten(samples: tf.Tensor) -> tf.Tensor:
    """``[S, B, ...] -> [S * B, ...]``, keeping the static per-instance dims for the solver's shape checks."""
    flat = tf.reshape(samples, tf.concat([[-1], tf.shape(samples)[2:]], axis=0))
    flat.set_shape(tf.TensorShape([None]).concatenate(samples.shape[2:]))
    return flat


def _unflatten(solutions: tf.Tensor, shape) -> tf.Tensor:
    return tf.reshape(solutions, shape)  # [S * B, ...] -> [S, B, ...]


def per_example_dot(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``<a, b>`` over all axes after the last two leading ones: ``[S, B, ...] x [S, B, ...] -> [S, B]``.

    Tuples of parts are summed part by part.
    """
    if isinstance(a, (tuple, list)):
        return tf.add_n([per_example_dot(x, y) for x, y in zip(a, b)])
    return tf.reduce_sum(a * b, axis=list(range(2, a.shape.rank)))


def zeros_if_none(upstream, parts):
    """Upstream gradients with ``None`` (a solution part the loss does not use) replaced by zeros."""
    return tuple(tf.zeros_like(p) if u is None else u for u, p in zip(upstream, parts))


class GradientMethod:
    """Base class of the serialisable gradient-method configs (``Identity``, ``Blackbox``, ``IMLE``,
    ``Perturbed``). Calling one, ``method(solver, costs, seed=None, training=True)``, returns the solution with
    the method's backward pass attached."""

    #: Whether the method draws random noise (the layer then owns a SeedGenerator).
    stochastic = False

    def __call__(self, solver, costs, seed=None, training=True):
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(repr(self))


def register(cls):
    return keras.saving.register_keras_serializable(package="identity_tf")(cls)


def check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"Argument `{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


def check_num_samples(num_samples) -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"Argument `num_samples` must be a positive integer. Received: num_samples={num_samples!r}")
    return num_samples
