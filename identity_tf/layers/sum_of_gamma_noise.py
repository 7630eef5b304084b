"""Sum-of-Gamma perturbation of logits as a layer (Niepert et al. 2021, paper eq. 23)."""

from __future__ import annotations

import keras
import tensorflow as tf

from identity_tf import noise as noise_lib


# registered under the package name it was first saved with (identity_tf.dvae), so saved DVAE / L2X models load
@keras.saving.register_keras_serializable(package="identity_tf.dvae")
class SumOfGammaNoise(keras.layers.Layer):
    """Adds Sum-of-Gamma noise (fresh each call) when training, and also at inference if ``at_inference``."""

    def __init__(self, k=10, tau=10.0, s=10, variant="paper", at_inference=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.noise = noise_lib.SumOfGamma(k=k, tau=tau, s=s, variant=variant)
        self.at_inference = bool(at_inference)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, logits, training=None):
        if not (training or self.at_inference):
            return logits
        return logits + self.noise.sample(tf.shape(logits), seed=self.seed_generator, dtype=logits.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), **self.noise.get_config(), "at_inference": self.at_inference, "seed": self.seed}
