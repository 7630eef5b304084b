"""Warcraft shortest path (paper B.5, Vlastelica et al. 2020): terrain costs from map images, through a solver."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from identity_tf import layers, losses, metrics, solvers
from identity_tf.method import MethodConfig, solver_block
from identity_tf.tasks.model_base import TaskModel


@dataclasses.dataclass
class WarcraftConfig:
    """Model settings of the Warcraft task.

    Attributes:
        size: Grid size k of the ``k x k`` map (12, 18, 24, 30); the image is ``8k x 8k``.
        neighbourhood: Shortest-path moves (8 as in the dataset).
    """

    size: int = 12
    neighbourhood: int = 8

    def __post_init__(self):
        if self.size < 2:
            raise ValueError(f"`model.size` must be >= 2. Received: size={self.size}")


def _basic_block(x, filters, name):
    shortcut = x
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn2")(x)
    return keras.layers.ReLU()(keras.layers.Add()([shortcut, x]))


def resnet18_stem(image_size: int, grid_size: int) -> keras.Model:
    """ResNet18's stem and first residual stage, adaptive max-pool to ``grid x grid``, channel mean -> ``[B, k, k]``
    (the modification of Vlastelica et al. 2020), randomly initialised."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)  # [B, 8k/4, 8k/4, 64] = [B, 2k, 2k, 64]
    x = _basic_block(x, 64, "layer1_0")
    x = _basic_block(x, 64, "layer1_1")
    side = image_size // 4
    if side % grid_size:
        raise ValueError(
            f"The feature map side ({side}) must be a multiple of the grid size. "
            f"Received: image_size={image_size}, grid_size={grid_size}"
        )
    x = keras.layers.MaxPooling2D(side // grid_size)(x)  # adaptive max-pool: [B, k, k, 64]
    x = keras.layers.Lambda(lambda t: tf.reduce_mean(t, axis=-1), output_shape=(grid_size, grid_size))(x)
    return keras.Model(inputs, x, name="resnet18_stem")


@keras.saving.register_keras_serializable(package="identity_tf")
class WarcraftShortestPath(TaskModel):
    """ResNet18 stem -> ``[B, k, k]`` -> [margin noise] -> softplus -> [projection] -> ShortestPath.

    The margin noise (when ``method.alpha > 0``) is added *before* the softplus so that the costs stay >= 0, as the
    shortest-path solver requires.

    Call arguments:
        maps: ``[B, 8k, 8k, 3]`` normalised images.

    Returns:
        Path indicator ``[B, k, k]``.
    """

    config_class = WarcraftConfig

    def __init__(
        self, config: WarcraftConfig | dict | None = None, method: MethodConfig | dict | None = None, seed=0, **kwargs
    ):
        super().__init__(config, method, seed, **kwargs)
        k = self.task_config.size
        self.backbone = resnet18_stem(8 * k, k)
        self.margin = layers.NoiseMarginLayer(self.method.alpha, seed=seed) if self.method.alpha > 0 else None
        self.solver = solvers.ShortestPath(neighbourhood=self.task_config.neighbourhood)
        self.blocks = solver_block(self.solver, dataclasses.replace(self.method, alpha=0.0), seed=seed)

    def costs(self, maps, training=None):
        """Predicted vertex costs ``[B, k, k]`` (>= 0)."""
        x = self.backbone(maps, training=training)
        if self.margin is not None:
            x = self.margin(x, training=training)
        return tf.nn.softplus(x)

    def call(self, maps, training=None):
        x = self.costs(maps, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def default_loss(self):
        """:func:`hamming_loss` of the path (targets: ``[B, k, k, 2]``, true path and true vertex costs)."""
        return hamming_loss

    def default_metrics(self):
        return [exact_path_accuracy, cost_ratio]


# Targets are ``[B, k, k, 2]``: the true path (``[..., 0]``) and the true vertex costs (``[..., 1]``, for the cost
# ratio), packed into one tensor because Keras' compiled losses and metrics see only (y_true, y_pred).
@keras.saving.register_keras_serializable(package="identity_tf.warcraft")
def hamming_loss(y_true, y_pred):
    """L1 loss between path indicators, per example: the number of wrong cells; ``y_true[..., 0]`` is the true path.

    A sum over cells, as in the Blackbox-Backprop code, so that BB's ``lambda = 20`` perturbs the costs by the
    intended amount (a per-cell mean made BB's perturbation ``k^2`` times smaller and its gradient zero: measured
    here, 12x12 maps, gradient norm exactly 0 on a batch).
    """
    return losses.hamming(y_true[..., 0], y_pred)


@keras.saving.register_keras_serializable(package="identity_tf.warcraft")
def exact_path_accuracy(y_true, y_pred):
    """1 if the predicted path equals the true one, per example."""
    return metrics.exact_match(y_true[..., 0], y_pred)


@keras.saving.register_keras_serializable(package="identity_tf.warcraft")
def cost_ratio(y_true, y_pred):
    """The paper's ``<w*, y> / <w*, y*>`` per map (``y_true[..., 1]`` = true vertex costs w*), x100.

    1.0 (100) is optimal; paths of equal cost count as optimal. (The original code averaged per-column ratios.)
    """
    return 100.0 * metrics.cost_ratio(y_true[..., 1], y_true[..., 0], y_pred)
