"""The tf.data pipeline of Warcraft: normalised maps and ``(path, weights)`` targets, batch by batch.

Example:
>>> mean, std = channel_stats(np.full([2, 8, 8, 3], 4, np.uint8))
>>> mean.tolist(), std.tolist()
([4.0, 4.0, 4.0], [9.999999974752427e-07, 9.999999974752427e-07, 9.999999974752427e-07])
"""

from __future__ import annotations

import numpy as np

from identity_tf.datasets import protocol
from identity_tf.datasets.cache import DataError
from identity_tf.datasets.warcraft.format import WarcraftSplit
from identity_tf.datasets.warcraft.tiles import TILE


def channel_stats(train_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (float32 ``[3]`` each) of uint8 maps ``[N, H, W, 3]``.

    Example:
    >>> mean, std = channel_stats(np.stack([np.zeros([2, 2, 3]), np.full([2, 2, 3], 2.0)]).astype(np.uint8))
    >>> mean.tolist(), std.tolist()
    ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    """
    total = np.zeros(3)
    squares = np.zeros(3)
    count = 0
    for start in range(0, len(train_maps), 1000):
        chunk = np.asarray(train_maps[start : start + 1000], np.float64).reshape(-1, 3)
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
        count += len(chunk)
    if count == 0:
        raise DataError("channel_stats needs at least one training map.")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def make_dataset(
    splits: dict[str, WarcraftSplit],
    split: str,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
):
    """A batched ``tf.data.Dataset`` of ``(maps, target)`` for the Warcraft task.

    ``maps`` are float32 ``[B, 8k, 8k, 3]`` normalised by the per-channel mean / std of the **train** maps;
    ``target`` is float32 ``[B, k, k, 2]``: channel 0 the shortest path, channel 1 the true vertex weights (for the
    cost-ratio metric). The last batch may be smaller; batches are prefetched. Maps are gathered from the (possibly
    memory-mapped) arrays batch by batch.

    Args:
        splits: The result of :func:`load`.
        split: "train", "val" or "test".
        batch_size: Maps per batch.
        shuffle: Reshuffle every epoch.
        seed: Shuffle seed.
        stats: Precomputed ``channel_stats(splits["train"].maps)`` (computed here when None).
    """
    import tensorflow as tf

    if split not in splits:
        raise ValueError(f"Argument `split` must be one of {sorted(splits)}. Received: split={split!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"Argument `batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    mean, std = stats if stats is not None else channel_stats(splits["train"].maps)
    data = splits[split]
    n, size = len(data.maps), data.vertex_weights.shape[1]
    targets = np.stack(
        [np.asarray(data.shortest_paths, np.float32), np.asarray(data.vertex_weights, np.float32)], axis=-1
    )  # [N, k, k, 2]
    maps = data.maps

    def gather(index):
        index = np.sort(index)
        return np.ascontiguousarray(maps[index]), targets[index]

    def fetch(index):
        images, target = tf.numpy_function(gather, [index], [tf.uint8, tf.float32], stateful=False)
        images = tf.ensure_shape(images, [None, TILE * size, TILE * size, 3])
        target = tf.ensure_shape(target, [None, size, size, 2])
        images = (tf.cast(images, tf.float32) - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
        return images, target

    return protocol.batches(tf.data.Dataset.range(n), n, batch_size, shuffle, seed, transform=fetch)


__all__ = ["channel_stats", "make_dataset"]
