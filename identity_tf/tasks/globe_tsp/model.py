"""Globe TSP (paper section 4.4, B.4): learn where capitals are from their flags, through a TSP solver."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from identity_tf import losses, metrics, solvers
from identity_tf.method import MethodConfig, solver_block
from identity_tf.tasks.model_base import TaskModel

FLAG_SHAPE = (20, 40, 3)
DISTANCES = ("arc", "chord")
_EPSILON = 1e-12


def _safe_norm(v, axis=-1):
    """``|v|`` with a finite gradient everywhere: ``sqrt(|v|^2 + eps^2)``, whose gradient ``v / sqrt(|v|^2 + eps^2)``
    has norm < 1 (``tf.norm`` gives NaN at ``v = 0``)."""
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=axis) + _EPSILON**2)


def sphere_distances(points, kind: str = "arc"):
    """Pairwise distances ``[B, k, k]`` between points ``[B, k, 3]`` on the unit sphere.

    ``kind="arc"``: the great-circle angle ``2 atan2(|p - q|, |p + q|)`` in radians (the haversine distance of the
    labels divided by the Earth's radius). Written with ``atan2`` rather than ``arccos(<p, q>)`` because arccos'
    derivative is infinite at coincident and antipodal points; here ``d atan2(y, x) = (x dy - y dx) / (x^2 + y^2)``
    with ``x^2 + y^2 = |p + q|^2 + |p - q|^2 = 4`` on the unit sphere, and both norms have bounded gradients, so the
    gradient is finite (and bounded) everywhere, including the diagonal. ``kind="chord"``: ``|p - q|``.
    The result is exactly symmetric with a zero diagonal.

    Example:
    >>> import numpy as np
    >>> p = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]], np.float32)
    >>> (sphere_distances(p).numpy() / np.pi).round(4)
    array([[[0. , 0.5, 1. ],
            [0.5, 0. , 0.5],
            [1. , 0.5, 0. ]]], dtype=float32)
    """
    if kind not in DISTANCES:
        raise ValueError(f"`kind` must be one of {DISTANCES}. Received: kind={kind!r}")
    points = tf.convert_to_tensor(points)
    p, q = points[:, :, None, :], points[:, None, :, :]  # [B, k, 1, 3], [B, 1, k, 3]
    apart = _safe_norm(p - q)  # [B, k, k]
    d = 2.0 * tf.atan2(apart, _safe_norm(p + q)) if kind == "arc" else apart
    d = 0.5 * (d + tf.linalg.matrix_transpose(d))
    k = tf.shape(points)[1]
    return d * (1.0 - tf.eye(k, dtype=d.dtype))


@dataclasses.dataclass
class GlobeTSPConfig:
    """Model settings of the Globe TSP task.

    Attributes:
        k: Number of countries per example (5, 10 or 20).
        flag_encoding: How the k flags enter the CNN (the paper leaves it open: "a set of k flags is presented to a
            CNN ... that predicts a vector of dimension 3k"). "shared" (default): the same CNN maps each flag to its 3
            coordinates, and the k outputs form the 3k vector (permutation equivariant). "stacked": the flags are
            stacked along channels, ``[20, 40, 3k]``, and one CNN predicts all 3k coordinates. Measured with
            ``identity-tf train configs/globe_tsp/tsp5_identity_noise0.2.yaml --quick`` (2000 examples, 20 epochs):
            validation tour accuracy 0.77 with "shared", 0.09 with "stacked" (it memorises the training set).
        tsp_method: TSP solver method ("auto": pure-TF Held-Karp for k <= 15, CP-SAT above; "lkh" for training at
            larger k, labels stay exact).
        distance: The model's distance between predicted points on the unit sphere. "arc" (default): the
            great-circle arc ``2 atan2(|p - q|, |p + q|)``, the distance the labels are optimal for, so a model that
            predicts every capital exactly gets every tour right. "chord": ``|p - q|``, what earlier releases used;
            it ranks single pairs like the arc but not tours: with the true capital coordinates, chord distances
            and the exact solver reproduce only 81.6 % of the TSP(5) and 76.5 % of the TSP(10) test labels of the
            offline dataset (``tests/tasks/test_globe_tsp_distance.py`` measures this cap), so a chord model is capped
            there unless it learns a distorted globe.
    """

    k: int = 5
    flag_encoding: str = "shared"
    tsp_method: str = "auto"
    distance: str = "arc"

    def __post_init__(self):
        if self.flag_encoding not in ("stacked", "shared"):
            raise ValueError(
                f"`model.flag_encoding` must be 'stacked' or 'shared'. Received: flag_encoding={self.flag_encoding!r}"
            )
        if self.distance not in DISTANCES:
            raise ValueError(f"`model.distance` must be one of {DISTANCES}. Received: distance={self.distance!r}")
        if self.k < 3:
            raise ValueError(f"`model.k` must be >= 3 (a tour needs 3 cities). Received: k={self.k}")


@keras.saving.register_keras_serializable(package="identity_tf")
class GlobeTSP(TaskModel):
    """CNN on k flags -> k points on the unit sphere -> distances -> [margin] -> [projection] -> TSP.

    The paper's network: conv (20 channels, kernel 4, stride 2), conv (50, 4, 2), a fully connected layer of 500,
    then ``3k`` outputs, normalised onto the unit sphere. The model's distance is the great-circle arc between the
    points (``model.distance: arc``, see ``sphere_distances``), the distance the labels' tours are optimal for.

    Call arguments:
        flags: ``[B, k, 20, 40, 3]`` floats in [0, 1].

    Returns:
        Tour adjacency ``[B, k, k]``.
    """

    config_class = GlobeTSPConfig

    def __init__(
        self, config: GlobeTSPConfig | dict | None = None, method: MethodConfig | dict | None = None, seed=0, **kwargs
    ):
        super().__init__(config, method, seed, **kwargs)
        k = self.task_config.k
        self.encoder = keras.Sequential(
            [
                keras.layers.Conv2D(20, 4, strides=2, activation="relu"),
                keras.layers.Conv2D(50, 4, strides=2, activation="relu"),
                keras.layers.Flatten(),
                keras.layers.Dense(500, activation="relu"),
                keras.layers.Dense(3 * k if self.task_config.flag_encoding == "stacked" else 3),
            ],
            name="encoder",
        )
        self.solver = solvers.TSP(method=self.task_config.tsp_method, num_cities=k)  # num_cities: truthful `xla`
        self.blocks = solver_block(self.solver, self.method, seed=seed, symmetric_noise=True)

    @classmethod
    def from_config(cls, config):
        task_config = config.get("config")
        if isinstance(task_config, dict) and "distance" not in task_config:
            # saved before `model.distance` existed: those models were trained with chord distances
            config = {**config, "config": {**task_config, "distance": "chord"}}
        return super().from_config(config)

    def points(self, flags):
        """Predicted unit-sphere points ``[B, k, 3]``."""
        k = self.task_config.k
        flags = tf.convert_to_tensor(flags)
        if self.task_config.flag_encoding == "stacked":
            # [B, k, H, W, 3] -> [B, H, W, k, 3] -> [B, H, W, 3k]
            stacked = tf.reshape(tf.transpose(flags, [0, 2, 3, 1, 4]), [-1, *FLAG_SHAPE[:2], 3 * k])
            raw = tf.reshape(self.encoder(stacked), [-1, k, 3])  # [B, 3k] -> [B, k, 3]
        else:
            per_flag = tf.reshape(flags, [-1, *FLAG_SHAPE])  # [B, k, H, W, 3] -> [B k, H, W, 3]
            raw = tf.reshape(self.encoder(per_flag), [-1, k, 3])  # [B k, 3] -> [B, k, 3]
        return tf.math.l2_normalize(raw, axis=-1)

    def distances(self, flags):
        """Distances ``[B, k, k]`` between the predicted points (exactly symmetric, zero diagonal)."""
        return sphere_distances(self.points(flags), self.task_config.distance)

    def call(self, flags, training=None):
        x = self.distances(flags)
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def default_loss(self):
        """The Hamming loss between tours (a sum over entries, see :class:`identity_tf.losses.HammingLoss`)."""
        return losses.HammingLoss()

    def default_metrics(self):
        """``tour_accuracy`` (exact tours) and ``edge_accuracy`` (the fraction of true edges predicted)."""
        return [metrics.Overlap(name="edge_accuracy"), metrics.ExactMatch(name="tour_accuracy")]


# The compiled loss and metrics of models saved by release 0.1 (their model.keras names these functions).
@keras.saving.register_keras_serializable(package="identity_tf.globe_tsp")
def hamming_loss(y_true, y_pred):
    """Release 0.1's compiled loss: :func:`identity_tf.losses.hamming` (a sum over the ``k x k`` entries)."""
    return losses.hamming(y_true, y_pred)


@keras.saving.register_keras_serializable(package="identity_tf.globe_tsp")
def edge_accuracy(y_true, y_pred):
    """Release 0.1's metric: :func:`identity_tf.metrics.overlap` of tours."""
    return metrics.overlap(y_true, y_pred)


@keras.saving.register_keras_serializable(package="identity_tf.globe_tsp")
def tour_accuracy(y_true, y_pred):
    """Release 0.1's metric: :func:`identity_tf.metrics.exact_match` of tours."""
    return metrics.exact_match(y_true, y_pred)


class CostNorm(keras.callbacks.Callback):
    """Logs ``cost_norm``: the mean norm of the model's distance matrices (the costs before margin noise and
    projection) over a fixed set of training examples, at each epoch's end (paper Fig. 4c: BB's costs collapse
    once the margin noise stops, Identity's do not).

    Args:
        flags: ``[N, k, 20, 40, 3]`` float inputs (a fixed subset of the training examples).
    """

    def __init__(self, flags):
        super().__init__()
        self.flags = tf.convert_to_tensor(flags, tf.float32)

    def on_epoch_end(self, epoch, logs=None):
        norms = tf.norm(tf.reshape(self.model.distances(self.flags), [tf.shape(self.flags)[0], -1]), axis=-1)
        if logs is not None:
            logs["cost_norm"] = float(tf.reduce_mean(norms))


def cost_norm_callback(data, num: int = 200) -> CostNorm:
    """:class:`CostNorm` on the first ``num`` training examples of a loaded Globe TSP dataset."""
    indices = data.train_indices[:num]  # [N, k]
    return CostNorm(data.flags[indices].astype("float32") / 255.0)  # [N, k, 20, 40, 3] in [0, 1]
