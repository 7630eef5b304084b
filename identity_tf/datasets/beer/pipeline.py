"""The tf.data pipeline of BeerAdvocate: batches of ``(token ids, score)``.

Example:
>>> ids, scores = next(iter(make_dataset(np.zeros([3, 350], np.int32), [0.1, 0.5, 0.9], batch_size=2)))
>>> ids.shape, scores.shape, scores.dtype.name
(TensorShape([2, 350]), TensorShape([2, 1]), 'float32')
"""

from __future__ import annotations

import numpy as np

from identity_tf.datasets import protocol


def make_dataset(x, y, batch_size: int, shuffle: bool = False, seed: int = 0):
    """``tf.data`` of ``(token_ids int32 [350], score float32 [1])`` batches.

    Args:
        x: int token ids ``[N, L]``.
        y: scores ``[N]`` (or ``[N, 1]``).
        batch_size: Batch size (the last batch may be smaller).
        shuffle: Reshuffle every epoch (seeded).
        seed: Shuffle seed.
    """
    import tensorflow as tf

    x = np.asarray(x, np.int32)
    y = np.asarray(y, np.float32).reshape(-1, 1)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"`x` must be [N, L] ids and `y` N scores. Received: {x.shape} and {y.shape}")
    return protocol.batches(tf.data.Dataset.from_tensor_slices((x, y)), len(x), batch_size, shuffle, seed)


__all__ = ["make_dataset"]
