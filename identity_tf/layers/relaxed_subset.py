"""Relaxed k-subset sampling: the concrete relaxation of L2X (Chen et al. 2018) and of Xie & Ermon (2019)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from identity_tf import noise as noise_lib
from identity_tf import solvers


@keras.saving.register_keras_serializable(package="identity_tf.l2x")
class RelaxedSubset(keras.layers.Layer):
    """The relaxed k-subsets of L2X ("l2x") and of Xie & Ermon ("softsub") when training; hard top-k otherwise."""

    def __init__(self, k=10, kind="l2x", temperature=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("l2x", "softsub"):
            raise ValueError(f"Argument `kind` must be 'l2x' or 'softsub'. Received: kind={kind!r}")
        self.k, self.kind, self.temperature, self.seed = int(k), kind, float(temperature), seed
        self.solver = solvers.TopK(k=self.k)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _gumbel(self, shape, dtype):
        return noise_lib.Gumbel().sample(shape, seed=self.seed_generator, dtype=dtype)

    def call(self, logits, training=None):
        if not training:
            return tf.cast(self.solver(logits), logits.dtype)
        t = self.temperature
        if self.kind == "l2x":  # k independent concrete samples, elementwise max (Chen et al. 2018)
            shape = tf.concat([tf.shape(logits)[:1], [self.k], tf.shape(logits)[1:]], axis=0)
            samples = tf.nn.softmax((logits[:, None] + self._gumbel(shape, logits.dtype)) / t, axis=-1)
            return tf.reduce_max(samples, axis=1)
        w = logits + self._gumbel(tf.shape(logits), logits.dtype)  # Xie & Ermon 2019
        khot = tf.zeros_like(logits)
        onehot = tf.zeros_like(logits)
        eps = tf.constant(np.finfo(np.float32).tiny, logits.dtype)
        for _ in range(self.k):
            w = w + tf.math.log(tf.maximum(1.0 - onehot, eps))
            onehot = tf.nn.softmax(w / t, axis=-1)
            khot = khot + onehot
        return khot

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "k": self.k,
            "kind": self.kind,
            "temperature": self.temperature,
            "seed": self.seed,
        }
