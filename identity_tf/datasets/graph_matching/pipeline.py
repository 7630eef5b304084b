"""The tf.data pipeline of graph matching: image pairs, keypoints, graphs and the true matching, batch by batch.

Inputs are a dict (:data:`INPUT_KEYS`): ``images1``, ``images2`` float32 ``[B, S, S, 3]`` normalised by the
ImageNet mean and standard deviation (as BB-GM); ``points1`` ``[B, n, 2]``, ``points2`` ``[B, m, 2]`` keypoints in
image units (x / S, y / S), 0 on padding; ``edges1``, ``edges2`` int32 ``[B, E, 2]`` directed Delaunay edges
(rows of -1 pad); ``num_nodes1``, ``num_nodes2`` int32 ``[B]``; ``perm`` float32 ``[B, n, m]`` the true matching
(read only by the informed margin during training). The target is the same true matching ``[B, n, m]``.

Example:
>>> MEAN.astype(float).round(3).tolist(), STD.astype(float).round(3).tolist()
([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
"""

from __future__ import annotations

import numpy as np

from identity_tf.datasets import protocol
from identity_tf.datasets.graph_matching.format import KeypointImages, PairArrays

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
INPUT_KEYS = ("images1", "images2", "points1", "points2", "edges1", "edges2", "num_nodes1", "num_nodes2", "perm")


def make_dataset(split: KeypointImages, pairs: PairArrays, batch_size: int, shuffle: bool = False, seed: int = 0):
    """A batched ``tf.data.Dataset`` of ``(inputs, true matching)`` (see the module); the last batch may be smaller.

    Args:
        split: The split's images (:class:`KeypointImages`).
        pairs: Its assembled pairs (:func:`identity_tf.datasets.graph_matching.format.assemble`).
        batch_size: Pairs per batch.
        shuffle: Reshuffle every epoch.
        seed: Shuffle seed.
    """
    import tensorflow as tf

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"Argument `batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    if len(pairs) != len(split.pairs):
        raise ValueError(
            f"`pairs` must be the assembled pairs of `split`. Received: {len(pairs)} pairs for {len(split.pairs)}"
        )
    images = split.images
    matrices = pairs.matrices()
    arrays = (pairs.points1, pairs.points2, pairs.edges1, pairs.edges2, pairs.num_nodes1, pairs.num_nodes2, matrices)
    size = split.image_size

    def gather(index):
        index = np.sort(index)
        first, second = pairs.image_index[index, 0], pairs.image_index[index, 1]
        return (images[first], images[second], *(a[index] for a in arrays))

    dtypes = [tf.uint8, tf.uint8, tf.float32, tf.float32, tf.int32, tf.int32, tf.int32, tf.int32, tf.float32]

    def fetch(index):
        parts = tf.numpy_function(gather, [index], dtypes, stateful=False)
        shapes = [[None, size, size, 3]] * 2 + [[None, *a.shape[1:]] for a in arrays]
        parts = [tf.ensure_shape(p, s) for p, s in zip(parts, shapes)]
        normalise = lambda im: (tf.cast(im, tf.float32) / 255.0 - MEAN) / STD  # noqa: E731
        inputs = dict(zip(INPUT_KEYS, [normalise(parts[0]), normalise(parts[1]), *parts[2:]]))
        return inputs, parts[-1]

    n = len(pairs)
    return protocol.batches(tf.data.Dataset.range(n), n, batch_size, shuffle, seed, transform=fetch)


__all__ = ["INPUT_KEYS", "MEAN", "STD", "make_dataset"]
