"""Losses on solver outputs."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="identity_tf")
class HammingLoss(keras.losses.Loss):
    """Hamming (L1) distance between a 0/1 solution and the true one, per example: ``sum |y_pred - y_true|`` over
    all non-batch axes (``mean`` with ``average=True``), averaged over the batch by Keras.

    The default sums over entries, as the Blackbox-Backprop code does: BB perturbs the costs by
    ``lam * dl/dy``, so averaging over entries would shrink its perturbation by the number of entries.

    Example:
    >>> import identity_tf as itf
    >>> float(itf.losses.HammingLoss()([[1.0, 0.0, 1.0, 0.0]], [[1.0, 1.0, 0.0, 0.0]]))
    2.0
    >>> float(itf.losses.HammingLoss(average=True)([[1.0, 0.0, 1.0, 0.0]], [[1.0, 1.0, 0.0, 0.0]]))
    0.5
    """

    def __init__(self, average: bool = False, name="hamming", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.average = bool(average)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.cast(y_true, y_pred.dtype)
        reduce = tf.reduce_mean if self.average else tf.reduce_sum
        return reduce(tf.abs(y_pred - y_true), axis=list(range(1, y_pred.shape.rank)))

    def get_config(self):
        return {**super().get_config(), "average": self.average}
