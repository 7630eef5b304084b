"""Keras layer keeping the embeddings and labels of the last batches as extra retrieval database entries."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="identity_tf")
class BatchMemory(keras.layers.Layer):
    """Appends the embeddings and labels of the previous ``num_batches`` training batches to the current batch.

    Rank-based losses estimate a query's rank in the whole dataset from a batch; RaMBO (Rolinek et al., 2020)
    enlarges the database with the previous batches (the paper: 3 batches of 128). Called with
    ``training=True``, the layer returns the current batch followed by the stored batches (newest first, with no
    gradient) and a validity mask, then stores the current batch in place of the oldest one. Before
    ``num_batches`` batches have been seen, and for rows beyond a smaller (last) batch, the memory rows are
    marked invalid: pass ``valid`` on to the loss (``RecallLoss(...)(relevance, scores, valid=...)``), which
    leaves them out of every ranking. With ``training=False`` the batch is returned alone, memory untouched.

    The original ``BatchMemoryRecallLoss`` stored detached *score rows* (the old batches as extra queries ranked
    within their own batch); this layer stores *embeddings*, so the current queries are ranked against the
    current batch plus the memory, as the RaMBO paper describes.

    State: the memory is non-trainable Keras variables (``[num_batches, rows, ...]`` embeddings and labels, a
    ``[num_batches, rows]`` validity mask and a batch counter), so it is saved with the weights
    (``save_weights``, checkpoints, ``.keras`` files) and a resumed run continues with the same memory;
    :meth:`reset` empties it. Under ``tf.distribute`` the memory is gathered: every replica stores the
    all-gathered batch of all replicas (``rows = replicas * ceil(batch_size / replicas)``), so all replicas hold
    the same memory of the last ``num_batches`` *global* batches, and checkpoints (which save the first
    replica's copy) restore it exactly. The current batch part stays the replica's own sub-batch. The memory
    variables are sync-on-read, so the layer must be built under the strategy it runs in. Works in eager mode,
    ``tf.function``, ``jit_compile=True`` (single device) and ``model.fit``.

    Reference: Rolinek et al., "Optimizing Rank-based Metrics with Blackbox Differentiation", CVPR 2020.

    Args:
        num_batches: Number of previous batches kept, M >= 1 (paper: 3).
        batch_size: The largest (global) batch size the layer is trained with; memory slots are this large.
        label_dtype: Dtype the labels are stored in.
        **kwargs: Base ``Layer`` arguments.

    Call arguments:
        embeddings: ``[B, ...]`` (e.g. ``[B, D]``) float embeddings of the batch.
        labels: ``[B, ...]`` labels of the batch (e.g. class ids ``[B]``).
        training: Memory is used and updated only when True.

    Returns:
        ``(database [B + M * rows, ...], database_labels [B + M * rows, ...], valid [B + M * rows] bool)``
        when training; ``(embeddings, labels, all-True [B])`` otherwise.

    Example:
    >>> import numpy as np
    >>> import identity_tf as itf
    >>> memory = itf.layers.BatchMemory(num_batches=2, batch_size=2)
    >>> for step in range(3):
    ...     batch = np.full((2, 1), float(step), "float32")
    ...     database, labels, valid = memory(batch, np.array([step, step]), training=True)
    >>> database.numpy().ravel(), labels.numpy(), valid.numpy()
    (array([2., 2., 1., 1., 0., 0.], dtype=float32), array([2, 2, 1, 1, 0, 0], dtype=int32), array([ True,  True,  True,  True,  True,  True]))
    """

    def __init__(self, num_batches: int = 3, batch_size: int | None = None, label_dtype="int32", **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("num_batches", num_batches), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Argument `{arg}` must be a positive integer. Received: {arg}={value!r}")
        self.num_batches = num_batches
        self.batch_size = batch_size
        self.label_dtype = keras.backend.standardize_dtype(label_dtype)

    def build(self, embeddings_shape, labels_shape):
        feature_shape = tuple(embeddings_shape[1:])
        label_shape = tuple(labels_shape[1:])
        if None in feature_shape or None in label_shape:
            raise ValueError(
                "BatchMemory needs fully defined non-batch dimensions. "
                f"Received: embeddings_shape={embeddings_shape}, labels_shape={labels_shape}"
            )
        self.num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.replica_capacity = math.ceil(self.batch_size / self.num_replicas)
        rows = self.num_replicas * self.replica_capacity

        def variable(name, shape, dtype):
            # Sync-on-read: each replica writes its own copy (identical, gathered); saving reads the first one.
            return keras.Variable(
                initializer="zeros",
                shape=shape,
                dtype=dtype,
                trainable=False,
                synchronization="on_read",
                aggregation="only_first_replica",
                name=name,
            )

        self.memory_embeddings = variable("embeddings", (self.num_batches, rows, *feature_shape), self.variable_dtype)
        self.memory_labels = variable("labels", (self.num_batches, rows, *label_shape), self.label_dtype)
        self.memory_valid = variable("valid", (self.num_batches, rows), "bool")
        self.batches_seen = variable("batches_seen", (), "int64")

    def call(self, embeddings, labels, training=None):
        batch = tf.shape(embeddings)[0]
        if not training:
            return embeddings, labels, tf.ones([batch], tf.bool)
        self._check_batch(embeddings)
        labels = tf.cast(labels, self.label_dtype)
        stored = tf.convert_to_tensor(self.memory_embeddings)  # [M, rows, ...]
        stored_labels = tf.convert_to_tensor(self.memory_labels)
        stored_valid = tf.convert_to_tensor(self.memory_valid)  # [M, rows]
        seen = tf.convert_to_tensor(self.batches_seen)

        # Slot of the batch written j + 1 steps ago, newest first: (seen - 1 - j) mod M
        newest_first = tf.math.floormod(seen - 1 - tf.range(self.num_batches, dtype=tf.int64), self.num_batches)
        memory = _merge_slots(tf.gather(stored, newest_first))  # [M, rows, ...] -> [M * rows, ...]
        database = tf.concat([embeddings, tf.stop_gradient(tf.cast(memory, embeddings.dtype))], axis=0)
        database_labels = tf.concat([labels, _merge_slots(tf.gather(stored_labels, newest_first))], axis=0)
        valid = tf.concat([tf.ones([batch], tf.bool), _merge_slots(tf.gather(stored_valid, newest_first))], axis=0)

        rows, row_labels, row_valid = self._gathered_rows(tf.stop_gradient(embeddings), labels)
        slot = tf.reshape(tf.math.floormod(seen, self.num_batches), [1, 1])
        self.memory_embeddings.assign(tf.tensor_scatter_nd_update(stored, slot, tf.cast(rows, stored.dtype)[None]))
        self.memory_labels.assign(tf.tensor_scatter_nd_update(stored_labels, slot, row_labels[None]))
        self.memory_valid.assign(tf.tensor_scatter_nd_update(stored_valid, slot, row_valid[None]))
        self.batches_seen.assign(seen + 1)
        return database, database_labels, valid

    def reset(self) -> None:
        """Empties the memory (the next ``num_batches`` training calls see fewer valid entries)."""
        if self.built:
            self.memory_valid.assign(tf.zeros_like(self.memory_valid))
            self.batches_seen.assign(0)

    def _check_batch(self, embeddings):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas != self.num_replicas:
            raise ValueError(
                f"BatchMemory {self.name!r} was built for {self.num_replicas} replica(s) and called with "
                f"{replicas}; build it under the strategy it runs in. Received: num_replicas_in_sync={replicas}"
            )
        if embeddings.shape[0] is not None and embeddings.shape[0] > self._capacity():
            raise ValueError(
                f"BatchMemory {self.name!r} stores at most {self._capacity()} rows per batch (batch_size="
                f"{self.batch_size}). Received: embeddings.shape={embeddings.shape}"
            )

    def _capacity(self) -> int:
        """Rows one call may write: a replica's share inside ``strategy.run``, the whole slot otherwise."""
        return self.replica_capacity if _replica_context() is not None else self.num_replicas * self.replica_capacity

    def _gathered_rows(self, embeddings, labels):
        """This step's rows for one memory slot: the batch padded with invalid rows (gathered over replicas)."""
        capacity = self._capacity()
        batch = tf.shape(embeddings)[0]
        if embeddings.shape[0] is None:
            check = tf.debugging.assert_less_equal(
                batch, capacity, message=f"BatchMemory {self.name!r}: batch larger than batch_size."
            )
            with tf.control_dependencies([check]):
                batch = tf.identity(batch)
        row_valid = tf.range(capacity) < batch
        embeddings, labels = _pad_rows(embeddings, capacity), _pad_rows(labels, capacity)
        context = _replica_context()
        if context is not None:  # [capacity, ...] per replica -> [replicas * capacity, ...], replica order
            embeddings = context.all_gather(embeddings, axis=0)
            labels = context.all_gather(labels, axis=0)
            row_valid = context.all_gather(tf.cast(row_valid, tf.int32), axis=0) > 0
        return embeddings, labels, row_valid

    def get_config(self):
        return {
            **super().get_config(),
            "num_batches": self.num_batches,
            "batch_size": self.batch_size,
            "label_dtype": self.label_dtype,
        }


def _replica_context():
    """The replica context inside ``strategy.run`` with several replicas, else None."""
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    return context if context is not None and context.num_replicas_in_sync > 1 else None


def _merge_slots(x):
    """``[M, rows, ...] -> [M * rows, ...]``."""
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))


def _pad_rows(x, capacity: int):
    """Pads ``[b, ...]`` with zero rows to ``[capacity, ...]`` (static shape kept)."""
    padding = tf.concat([[[0, capacity - tf.shape(x)[0]]], np.zeros((x.shape.rank - 1, 2), np.int32)], axis=0)
    padded = tf.pad(x, padding)
    padded.set_shape(tf.TensorShape([capacity]).concatenate(x.shape[1:]))
    return padded
