"""Datasets of the paper's tasks: loaders for the published formats and offline builds from registry files.

Every data set follows one protocol (:mod:`identity_tf.datasets.protocol`): ``build`` writes its folder once,
atomically, with a manifest of its parameters and file digests, and rebuilds it when they differ; ``load`` checks
the files (a missing or changed file is a :class:`~identity_tf.datasets.cache.DataError` naming it) and
``make_dataset`` gives the ``tf.data`` pipeline. Shared helpers (data directory, pinned downloads, atomic writes,
digests) are in :mod:`identity_tf.datasets.cache`; the data sets are :mod:`.globe_tsp`, :mod:`.warcraft`,
:mod:`.beer`, :mod:`.mnist` and :mod:`.retrieval`.
"""

from identity_tf.datasets import cache
from identity_tf.datasets import protocol
from identity_tf.datasets import globe_tsp
from identity_tf.datasets import warcraft

__all__ = [
    "cache",
    "globe_tsp",
    "protocol",
    "warcraft",
]
