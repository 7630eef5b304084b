"""Losses on solver outputs."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="identity_tf")
class HammingLoss(keras.losses.Loss):
    """Mean Hamming (L1) distance between a 0/1 solution and the true one, per example:
    ``mean(|y_pred - y_true|)`` over all non-batch axes, which is ``mean(y (1 - y*) + (1 - y) y*)`` on 0/1
    inputs as in the BB papers.

    Example:
    >>> import identity_tf as itf
    >>> float(itf.losses.HammingLoss()([[1.0, 0.0, 1.0, 0.0]], [[1.0, 1.0, 0.0, 0.0]]))
    0.5
    """

    def __init__(self, name="hamming", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.cast(y_true, y_pred.dtype)
        return tf.reduce_mean(tf.abs(y_pred - y_true), axis=list(range(1, y_pred.shape.rank)))
