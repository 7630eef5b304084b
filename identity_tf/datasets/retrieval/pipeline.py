"""``tf.data`` episodes for retrieval: class-balanced groups of images, ``classes_per_episode x images_per_class``.

A rank-based loss needs positives in the database: a random batch of a many-class set (e.g. 300 icon names with 6
images each) holds almost none. So one training *example* is an **episode**: ``P`` distinct classes of the split,
``K`` distinct images of each (``n = P K`` images, class-major order), drawn from a seed. Every query then has
``K - 1`` positives in its own episode. A Keras batch is ``B`` episodes (``[B, n, S, S, 3]`` images, ``[B, n]``
labels). Training episodes are drawn afresh every epoch (``tf.data.Dataset.random`` re-randomised on each
iteration); evaluation episodes are fixed.

Example:
>>> labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
>>> table = ClassTable.from_labels(labels, np.arange(9))
>>> episode = table.sample(np.random.default_rng(0), classes_per_episode=2, images_per_class=2)
>>> sorted(np.bincount(labels[episode]).tolist())
[0, 2, 2]
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class ClassTable:
    """The images of a split grouped by class: ``members[c]`` are the image indices of ``classes[c]``."""

    classes: np.ndarray
    members: list

    @classmethod
    def from_labels(cls, labels: np.ndarray, indices: np.ndarray) -> ClassTable:
        indices = np.asarray(indices)
        split_labels = np.asarray(labels)[indices]
        classes = np.unique(split_labels)
        return cls(classes, [indices[split_labels == c] for c in classes])

    @property
    def min_count(self) -> int:
        return min(len(m) for m in self.members)

    def sample(self, rng: np.random.Generator, classes_per_episode: int, images_per_class: int) -> np.ndarray:
        """``[P * K]`` image indices: ``P`` distinct classes, ``K`` distinct images of each (class-major)."""
        chosen = rng.choice(len(self.classes), size=classes_per_episode, replace=False)
        return np.concatenate(
            [rng.choice(self.members[c], size=images_per_class, replace=False) for c in chosen]
        ).astype(np.int64)


def augment(images: np.ndarray, rng: np.random.Generator, pad_fraction: float = 0.125) -> np.ndarray:
    """Random horizontal flips and random crops of edge-padded images (the usual metric-learning augmentation, as
    the random resized crops and flips of the CUB protocol): ``images [n, S, S, C]`` -> the same shape, each image
    flipped with probability 1/2 and shifted by up to ``round(pad_fraction * S)`` pixels along each axis.

    Example:
    >>> x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    >>> y = augment(x, np.random.default_rng(0), pad_fraction=0.0)  # no shift: only a possible flip
    >>> bool(np.array_equal(y, x) or np.array_equal(y, x[:, :, ::-1]))
    True
    """
    n, size = images.shape[0], images.shape[1]
    pad = int(round(pad_fraction * size))
    flips = rng.random(n) < 0.5
    offsets = rng.integers(0, 2 * pad + 1, size=(n, 2))
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else images
    out = np.empty_like(images)
    for i in range(n):
        top, left = offsets[i]
        crop = padded[i, top : top + size, left : left + images.shape[2]]
        out[i] = crop[:, ::-1] if flips[i] else crop
    return out


def check_episode(table: ClassTable, classes_per_episode: int, images_per_class: int, split: str) -> None:
    """Refuses an episode shape the split cannot fill (ValueError naming the setting)."""
    if classes_per_episode > len(table.classes):
        raise ValueError(
            f"`data.classes_per_episode` must be at most the {len(table.classes)} classes of the {split} split. "
            f"Received: classes_per_episode={classes_per_episode}"
        )
    if images_per_class > table.min_count:
        raise ValueError(
            f"`data.images_per_class` must be at most {table.min_count}, the fewest images of a class in the {split} "
            f"split. Received: images_per_class={images_per_class}"
        )


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    table: ClassTable,
    classes_per_episode: int,
    images_per_class: int,
    num_episodes: int,
    batch_size: int,
    seed: int = 0,
    training: bool = False,
    augmented: bool = False,
):
    """Batches of episodes ``([B, n, S, S, 3] uint8, [B, n] int32)``.

    Args:
        images, labels: The whole data set (``labels`` are class indices).
        table: The split (:class:`ClassTable`).
        classes_per_episode, images_per_class: ``P`` and ``K``.
        num_episodes: Episodes per pass (an epoch).
        batch_size: Episodes per batch.
        seed: Seed of the episodes.
        training: Fresh episodes on every pass and only full batches; otherwise the same episodes every pass.
        augmented: Random flips and crops of every image (:func:`augment`, drawn from the episode's seed).
    """
    import tensorflow as tf

    check_episode(table, classes_per_episode, images_per_class, "training" if training else "evaluation")
    n = classes_per_episode * images_per_class
    shape = images.shape[1:]

    def episode(draw):
        rng = np.random.default_rng(int(draw) & 0x7FFFFFFFFFFFFFFF)
        index = table.sample(rng, classes_per_episode, images_per_class)
        x = augment(images[index], rng) if augmented else images[index]
        return x, labels[index].astype(np.int32)

    def load(draw):
        x, y = tf.numpy_function(episode, [draw], (tf.uint8, tf.int32), stateful=False)
        x.set_shape((n, *shape))
        y.set_shape((n,))
        return x, y

    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=training).take(num_episodes)
    dataset = draws.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


__all__ = ["ClassTable", "augment", "check_episode", "make_dataset"]
