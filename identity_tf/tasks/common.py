"""Pieces shared by the paper's task models: the solver block, gradient noise, Sum-of-Gamma noise and method settings."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from identity_tf import gradients, layers
from identity_tf import noise as noise_lib
from identity_tf._utils import stateless_seed

GRADIENTS = ("identity", "blackbox", "imle", "perturbed")
PROJECTIONS = ("none", "mean", "norm", "std", "auto")
GRADIENT_NOISE_SCALES = ("per_example", "batch")


@dataclasses.dataclass
class MethodConfig:
    """How the solver is differentiated (one row of a paper table).

    Attributes:
        gradient: "identity", "blackbox", "imle" or "perturbed".
        lam: lambda of BB / I-MLE.
        projection: "none", "mean", "norm", "std" or "auto" (applied before the solver).
        alpha: Noise-induced margin alpha (0 = off).
        noise_epochs: Epochs during which the margin noise is on; None = the whole training.
        gradient_noise: sigma of Gaussian noise added to dl/dy (the paper's robustness study, section 4.4); 0 = off.
        gradient_noise_scale: What sigma is relative to. "per_example" (default): the gradient of each example's
            own loss, ``dl_i/dy_i`` (entries +-1 for the L1 losses here), which is our reading of the paper's Fig. 4a
            and 8b; the noise added to the gradient of the batch-mean loss is then ``sigma / B`` (B = global
            batch). "batch": sigma on the gradient of the batch-mean loss as Keras backpropagates it (entries
            +-1/B), what earlier releases did — sigma = 0.25 then drowned the signal of both methods.
    """

    gradient: str = "identity"
    lam: float = 20.0
    projection: str = "auto"
    alpha: float = 0.0
    noise_epochs: int | None = None
    gradient_noise: float = 0.0
    gradient_noise_scale: str = "per_example"

    def __post_init__(self):
        if self.gradient not in GRADIENTS:
            raise ValueError(f"`method.gradient` must be one of {GRADIENTS}. Received: gradient={self.gradient!r}")
        if self.projection not in PROJECTIONS:
            raise ValueError(
                f"`method.projection` must be one of {PROJECTIONS}. Received: projection={self.projection!r}"
            )
        if self.gradient_noise_scale not in GRADIENT_NOISE_SCALES:
            raise ValueError(
                f"`method.gradient_noise_scale` must be one of {GRADIENT_NOISE_SCALES}. "
                f"Received: gradient_noise_scale={self.gradient_noise_scale!r}"
            )
        if self.alpha < 0 or self.gradient_noise < 0 or self.lam <= 0:
            raise ValueError(
                "`method.alpha` and `method.gradient_noise` must be >= 0 and `method.lam` > 0. "
                f"Received: alpha={self.alpha}, gradient_noise={self.gradient_noise}, lam={self.lam}"
            )

    def gradient_object(self) -> gradients.GradientMethod:
        if self.gradient == "blackbox":
            return gradients.Blackbox(lam=self.lam)
        if self.gradient == "imle":
            return gradients.IMLE(lam=self.lam)
        return gradients.get(self.gradient)


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


def require_default_method(task: str, method: MethodConfig) -> None:
    """For tasks whose method settings live in their own `model` section (DVAE, L2X)."""
    if method != MethodConfig():
        raise ValueError(
            f"The {task} task takes its method settings from the `model` section (model.method, model.projection, "
            f"model.lam, ...); leave the `method` section empty. Received: method={dataclasses.asdict(method)}"
        )


def as_config(cls, value):
    """``None`` -> defaults, a dict (from ``get_config``) -> ``cls(**dict)``, an instance -> itself."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    return cls(**value)


class TaskModel(keras.Model):
    """Base of the task models: holds the task's config dataclass, the method config and the seed, and
    serialises them. Subclasses set ``config_class`` and build their layers after ``super().__init__``."""

    config_class: type = None

    def __init__(self, config=None, method: MethodConfig | dict | None = None, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.task_config = as_config(self.config_class, config)
        self.method = as_config(MethodConfig, method)
        self.seed = seed

    def get_config(self):
        return {
            **super().get_config(),
            "config": dataclasses.asdict(self.task_config),
            "method": dataclasses.asdict(self.method),
            "seed": self.seed,
        }


def solver_block(solver, method: MethodConfig, seed: int, symmetric_noise: bool = False):
    """The layers ``[noise] -> [projection] -> solver -> [gradient noise]`` for a method config."""
    blocks = []
    if method.alpha > 0:
        blocks.append(layers.NoiseMarginLayer(method.alpha, seed=seed, symmetric=symmetric_noise, name="margin"))
    projection = None if method.projection == "none" else method.projection
    if method.projection == "auto" and method.gradient != "identity":
        projection = None  # "auto" means: the projection Identity needs; the baselines run unprojected
    if projection is not None:
        blocks.append(layers.ProjectionLayer(projection, solver=solver, name="projection"))
    blocks.append(layers.SolverLayer(solver, gradient=method.gradient_object(), seed=seed + 1, name="solver"))
    if method.gradient_noise > 0:
        blocks.append(
            GradientNoiseLayer(
                method.gradient_noise, seed=seed + 2, scale=method.gradient_noise_scale, name="gradient_noise"
            )
        )
    return blocks


# registered under its first package name, so that saved DVAE / L2X models keep loading
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
