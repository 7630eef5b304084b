"""Small helpers shared across the package."""

from __future__ import annotations

import tensorflow as tf


def non_batch_axes(x: tf.Tensor) -> list[int]:
    """All axes but the first (projections and norms act per example)."""
    if x.shape.rank is None or x.shape.rank < 2:
        raise ValueError(f"Expected a batch-first tensor of rank >= 2. Received: shape={x.shape}")
    return list(range(1, x.shape.rank))


def compute_dtype(x: tf.Tensor) -> tf.DType:
    """float32 for half-precision inputs (sums and norms are unsafe in float16), else the input dtype."""
    return tf.float32 if x.dtype in (tf.float16, tf.bfloat16) else x.dtype


def stateless_seed(seed) -> tf.Tensor | None:
    """Turns a Keras ``SeedGenerator``, an int, or a ``[2]`` int tensor into a stateless seed (or None).

    Under a ``tf.distribute`` strategy the replica id is folded in, so replicas draw different noise (a Keras
    ``SeedGenerator`` advances in lockstep on every replica).
    """
    if seed is None:
        return None
    import keras  # local import keeps this module importable without building Keras state

    if isinstance(seed, keras.random.SeedGenerator):
        seed = seed.next()
    elif isinstance(seed, int):
        seed = tf.constant([seed, 0], dtype=tf.int32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)  # TFP wants int32 seeds
    if seed.shape != (2,):
        raise ValueError(f"A stateless seed must have shape [2]. Received: seed.shape={seed.shape}")
    if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context() is False:
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = seed + tf.stack([tf.constant(0, tf.int32), tf.cast(replica, tf.int32) * 1_000_003])
    return seed
