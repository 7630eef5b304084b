"""Straight-through Gumbel-softmax top-k (the DVAE baseline of the paper)."""

from __future__ import annotations

import keras
import tensorflow as tf

from identity_tf import noise as noise_lib
from identity_tf import solvers


@keras.saving.register_keras_serializable(package="identity_tf.dvae")
class GumbelSoftmaxTopK(keras.layers.Layer):
    """Straight-through Gumbel-softmax top-k along the last axis.

    Forward: the k-hot top-k of ``z = logits + G`` (G standard Gumbel). Backward: the gradient of
    ``softmax(z / temperature)`` (the straight-through estimator; the forward value is exactly k-hot). Noise is drawn when training and,
    if ``at_inference``, at inference too (otherwise the forward is the top-k of the logits).
    """

    def __init__(self, k=10, temperature=1.0, at_inference=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.k, self.temperature, self.at_inference, self.seed = int(k), float(temperature), bool(at_inference), seed
        self.solver = solvers.TopK(k=self.k)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, logits, training=None):
        z = logits
        if training or self.at_inference:
            z = logits + noise_lib.Gumbel().sample(tf.shape(logits), seed=self.seed_generator, dtype=logits.dtype)
        solver, temperature = self.solver, self.temperature

        @tf.custom_gradient
        def straight_through(z):
            def backward(upstream):  # vector-Jacobian product of softmax(z / T) along the last axis
                soft = tf.nn.softmax(z / temperature, axis=-1)
                return soft * (upstream - tf.reduce_sum(upstream * soft, axis=-1, keepdims=True)) / temperature

            return tf.cast(solver(z), z.dtype), backward  # exactly k-hot (no hard + soft - soft round-off)

        return straight_through(z)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "k": self.k,
            "temperature": self.temperature,
            "at_inference": self.at_inference,
            "seed": self.seed,
        }
