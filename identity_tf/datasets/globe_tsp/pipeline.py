"""The tf.data pipeline of Globe TSP: the train / val / test split and batches of ``(flags_k, adjacency)``.

Example:
>>> flags, tours = next(iter(make_dataset(_toy_data(), "test", batch_size=8)))
>>> flags.shape, tours.shape
(TensorShape([2, 3, 20, 40, 3]), TensorShape([2, 3, 3]))
"""

from __future__ import annotations

import numpy as np

from identity_tf.datasets import protocol
from identity_tf.datasets.globe_tsp.format import SPLITS, GlobeTSPData, _check_int


def _toy_data(num_train: int = 10, num_test: int = 2) -> GlobeTSPData:
    """A tiny valid Globe TSP(3) over 4 blank countries, for the examples."""
    rng = np.random.default_rng(0)
    ring = np.roll(np.eye(3, dtype=np.uint8), 1, 1) + np.roll(np.eye(3, dtype=np.uint8), -1, 1)  # the only 3-tour
    indices = [np.argsort(rng.random((n, 4)), axis=1)[:, :3] for n in (num_train, num_test)]
    return GlobeTSPData(
        np.zeros((4, 20, 40, 3), np.uint8), np.zeros((4, 2)), np.array(list("abcd")),
        indices[0], np.tile(ring, (num_train, 1, 1)), indices[1], np.tile(ring, (num_test, 1, 1)),
    )  # fmt: skip


def split_arrays(data: GlobeTSPData, split: str, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [N, k], tours [N, k, k])`` of a split: ``"val"`` is the last ``val_fraction`` of training.

    ``"train"`` is the rest of the training examples, ``"test"`` the test set; the split is deterministic.

    Example:
    >>> data = _toy_data()  # 10 training and 2 test examples of k = 3 out of 4 countries
    >>> [len(split_arrays(data, split)[0]) for split in ("train", "val", "test")]
    [9, 1, 2]
    """
    if split not in SPLITS:
        raise ValueError(f"Argument `split` must be one of {SPLITS}. Received: split={split!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"Argument `val_fraction` must be a number in [0, 1). Received: val_fraction={val_fraction!r}")
    if split == "test":
        return data.test_indices, data.test_tours
    num = len(data.train_indices)
    num_val = int(round(val_fraction * num))
    cut = num - num_val
    if split == "train":
        return data.train_indices[:cut], data.train_tours[:cut]
    return data.train_indices[cut:], data.train_tours[cut:]


def make_dataset(
    data: GlobeTSPData,
    split: str,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
):
    """A batched ``tf.data.Dataset`` of ``(flags_k, adjacency)`` for one split.

    Elements: ``flags_k`` float32 ``[B, k, 20, 40, 3]`` in [0, 1] (the example's flags, in the order of its
    indices) and ``adjacency`` float32 ``[B, k, k]``; the last batch may be smaller. Prefetched.

    Args:
        data: From :func:`load`.
        split: ``"train"``, ``"val"`` (the last ``val_fraction`` of the training examples) or ``"test"``.
        batch_size: Examples per batch.
        shuffle: Reshuffle the examples every epoch (seeded by ``seed``).
        seed: Shuffle seed.
        val_fraction: Fraction of the training examples held out as ``"val"``.

    Example:
    >>> data = _toy_data()  # 10 training and 2 test examples of k = 3 out of 4 countries
    >>> flags, tours = next(iter(make_dataset(data, "train", batch_size=4)))
    >>> flags.shape, tours.shape
    (TensorShape([4, 3, 20, 40, 3]), TensorShape([4, 3, 3]))
    """
    import tensorflow as tf

    batch_size = _check_int(batch_size, "batch_size", 1)
    indices, tours = split_arrays(data, split, val_fraction)
    flags = tf.constant(data.flags, tf.uint8)  # [C, 20, 40, 3]
    dataset = tf.data.Dataset.from_tensor_slices((indices, tours.astype(np.float32)))

    def to_batch(batch_indices, adjacency):
        flags_k = tf.cast(tf.gather(flags, batch_indices), tf.float32) / 255.0  # [B, k] -> [B, k, 20, 40, 3]
        return flags_k, adjacency

    return protocol.batches(dataset, len(indices), batch_size, shuffle, seed, transform=to_batch)


__all__ = ["make_dataset", "split_arrays"]
