"""Globe TSP (paper section 4.4, B.4): learn where capitals are from their flags, through a TSP solver.

:mod:`.model` (the Keras model, its distance, loss and metrics), :mod:`.task` (the trainer's task: data settings,
splits, label corruption), :mod:`.plots` (tours on a map).
"""

from identity_tf.tasks.globe_tsp import task as _task  # noqa: F401  (registers "globe_tsp")
from identity_tf.tasks.globe_tsp.model import FLAG_SHAPE
from identity_tf.tasks.globe_tsp.model import CostNorm
from identity_tf.tasks.globe_tsp.model import GlobeTSP
from identity_tf.tasks.globe_tsp.model import GlobeTSPConfig
from identity_tf.tasks.globe_tsp.model import cost_norm_callback
from identity_tf.tasks.globe_tsp.model import edge_accuracy
from identity_tf.tasks.globe_tsp.model import hamming_loss
from identity_tf.tasks.globe_tsp.model import sphere_distances
from identity_tf.tasks.globe_tsp.model import tour_accuracy
from identity_tf.tasks.globe_tsp.task import GlobeTSPData
from identity_tf.tasks.globe_tsp.task import corrupt_labels

__all__ = [
    "FLAG_SHAPE",
    "CostNorm",
    "GlobeTSP",
    "GlobeTSPConfig",
    "GlobeTSPData",
    "corrupt_labels",
    "cost_norm_callback",
    "edge_accuracy",
    "hamming_loss",
    "sphere_distances",
    "tour_accuracy",
]
