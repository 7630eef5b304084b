"""Keras layer adding the noise-induced margin (paper section 3.6)."""

from __future__ import annotations

import keras
import tensorflow as tf

from identity_tf import _structured, noise


@keras.saving.register_keras_serializable(package="identity_tf")
class NoiseMarginLayer(keras.layers.Layer):
    """Adds ``xi`` uniform on ``{-alpha/2, +alpha/2}`` per entry to the costs, only when ``training=True``.

    Fresh noise each step from the layer's ``keras.random.SeedGenerator``; under ``tf.distribute`` the replica
    id is folded into the seed so replicas draw different noise. ``alpha`` is a variable-free attribute that a
    schedule may change between epochs (e.g. noise for the first half of training, then ``alpha = 0``).

    Args:
        alpha: Margin size alpha >= 0 (paper: 0.1-0.5 on standardised costs).
        seed: Seed of the noise; None draws a random one.
        symmetric: For ``[B, ..., n, n]`` costs of symmetric problems (TSP distances): the noise of entry
            ``(i, j)`` is mirrored to ``(j, i)`` and the diagonal gets none, so the costs stay symmetric.

    Call arguments:
        costs: ``[B, ...]``, or structured costs (a tuple such as graph matching's
            ``(unary, pairwise, edges1, edges2)``): noise on every floating-point part.
        training: Noise is added only when True.

    Example:
    >>> import numpy as np
    >>> import identity_tf as itf
    >>> layer = itf.layers.NoiseMarginLayer(alpha=0.2, seed=0)
    >>> layer(np.ones((1, 2), "float32"), training=False).numpy()
    array([[1., 1.]], dtype=float32)
    """

    def __init__(self, alpha: float, seed=None, symmetric: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.symmetric = bool(symmetric)
        noise._check_alpha(alpha)
        self.alpha = float(alpha)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # A variable so that changing alpha between epochs does not need a retrace.
        self._alpha = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.alpha),
            trainable=False,
            dtype="float32",
            name="alpha",
        )

    def set_alpha(self, alpha: float) -> None:
        """Changes the margin size (e.g. from a callback); takes effect without retracing."""
        noise._check_alpha(alpha)
        self.alpha = float(alpha)
        self._alpha.assign(self.alpha)

    def call(self, costs, training=None):
        if not training:
            return costs
        if isinstance(costs, (tuple, list)):  # structured costs: noise on the floating-point parts
            return self._structured_call(tuple(costs))
        costs = tf.convert_to_tensor(costs)
        unit = noise.margin(tf.zeros_like(costs, dtype=tf.float32), alpha=1.0, seed=self.seed_generator)
        if self.symmetric:  # keep the strict upper triangle and mirror it: [..., n, n]
            upper = tf.linalg.band_part(unit, 0, -1) - tf.linalg.band_part(unit, 0, 0)
            unit = upper + tf.linalg.matrix_transpose(upper)
        return costs + tf.cast(self._alpha * unit, costs.dtype)

    def _structured_call(self, costs):
        if self.symmetric:
            raise ValueError(
                "NoiseMarginLayer(symmetric=True) is for one [B, ..., n, n] cost tensor; structured costs (a tuple) "
                f"get independent noise per entry. Received: symmetric={self.symmetric}"
            )
        parts, rebuild = _structured.split(costs)
        units = noise.margin(
            tuple(tf.zeros_like(p, dtype=tf.float32) for p in parts), alpha=1.0, seed=self.seed_generator
        )
        return rebuild([p + tf.cast(self._alpha * u, p.dtype) for p, u in zip(parts, units)])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "seed": self.seed, "symmetric": self.symmetric}
