"""Image retrieval (paper section 4.3, B.3): embeddings ranked by a recall loss through Identity or BB.

:mod:`.model` (the Keras model, its loss, metric and optimiser), :mod:`.task` (the trainer's task: data settings,
episodes, R@K on the held-out classes), :mod:`.plots` (queries with their top-K retrieved images).
"""

from identity_tf.tasks.retrieval import task as _task  # noqa: F401  (registers "retrieval")
from identity_tf.tasks.retrieval.model import RetrievalAdam
from identity_tf.tasks.retrieval.model import RetrievalConfig
from identity_tf.tasks.retrieval.model import RetrievalModel
from identity_tf.tasks.retrieval.model import episode_recall_at_1
from identity_tf.tasks.retrieval.model import episode_scores
from identity_tf.tasks.retrieval.model import fill_invalid
from identity_tf.tasks.retrieval.task import RetrievalData
from identity_tf.tasks.retrieval.task import recall_at_ks
from identity_tf.tasks.retrieval.task import split_indices

__all__ = [
    "RetrievalAdam",
    "RetrievalConfig",
    "RetrievalData",
    "RetrievalModel",
    "episode_recall_at_1",
    "episode_scores",
    "fill_invalid",
    "recall_at_ks",
    "split_indices",
]
