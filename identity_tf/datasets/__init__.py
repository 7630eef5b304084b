"""Datasets of the paper's tasks: loaders for the published formats and offline builds from registry files."""

from identity_tf.datasets import cache
from identity_tf.datasets import globe_tsp
from identity_tf.datasets import warcraft

__all__ = [
    "cache",
    "globe_tsp",
    "warcraft",
]
