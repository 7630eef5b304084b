"""Gaussian noise on the gradient that reaches a layer's output (the paper's robustness study, section 4.4)."""

from __future__ import annotations

import keras
import tensorflow as tf

from identity_tf._utils import stateless_seed

GRADIENT_NOISE_SCALES = ("per_example", "batch")


@keras.saving.register_keras_serializable(package="identity_tf")
class GradientNoiseLayer(keras.layers.Layer):
    """Identity on the forward pass; adds Gaussian noise to the incoming gradient when training.

    Simulates further learnable layers after the solver (paper section 4.4, "corrupting gradients").
    ``scale="batch"`` adds ``N(0, sigma^2)`` to the gradient as it arrives (the gradient of the batch-mean loss);
    ``scale="per_example"`` adds ``N(0, (sigma / B)^2)``, B the global batch size (the local batch times the
    replicas in sync), i.e. noise of std sigma on each example's own ``dl_i/dy_i``, since Keras' loss is
    ``sum_i l_i / B``.
    """

    def __init__(self, sigma: float, seed=None, scale: str = "batch", **kwargs):
        super().__init__(**kwargs)
        if not sigma >= 0:
            raise ValueError(f"Argument `sigma` must be >= 0. Received: sigma={sigma!r}")
        if scale not in GRADIENT_NOISE_SCALES:
            raise ValueError(f"Argument `scale` must be one of {GRADIENT_NOISE_SCALES}. Received: scale={scale!r}")
        self.sigma = float(sigma)
        self.scale = scale
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.sigma == 0:
            return inputs
        noise = tf.random.stateless_normal(
            tf.shape(inputs), seed=stateless_seed(self.seed_generator), dtype=inputs.dtype, alg="philox"
        )
        sigma = self.sigma
        if self.scale == "per_example":
            context = tf.distribute.get_replica_context()  # None in a cross-replica context
            replicas = (context or tf.distribute.get_strategy()).num_replicas_in_sync
            sigma = sigma / tf.cast(tf.shape(inputs)[0] * replicas, inputs.dtype)

        @tf.custom_gradient
        def forward(x):
            return tf.identity(x), lambda upstream: upstream + sigma * noise

        return forward(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma, "seed": self.seed, "scale": self.scale}
