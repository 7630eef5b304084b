"""Deep graph matching (paper 4.2 / B.2, BB-GM of Rolinek et al. 2020): keypoint costs through a graph matching.

:mod:`.model` (the Keras model, its layers, loss and metrics), :mod:`.task` (the trainer's task), :mod:`.plots`
(predicted vs true matches).
"""

from identity_tf.tasks.graph_matching import task as _task  # noqa: F401  (registers "graph_matching")
from identity_tf.tasks.graph_matching.model import BackboneScaledAdam
from identity_tf.tasks.graph_matching.model import GraphMatchingConfig
from identity_tf.tasks.graph_matching.model import GraphMatchingNet
from identity_tf.tasks.graph_matching.model import SplineGraphConv
from identity_tf.tasks.graph_matching.model import WeightedInnerProductAffinity
from identity_tf.tasks.graph_matching.model import accuracy_per_class
from identity_tf.tasks.graph_matching.model import cartesian_attributes
from identity_tf.tasks.graph_matching.model import hamming_loss
from identity_tf.tasks.graph_matching.model import matching_accuracy
from identity_tf.tasks.graph_matching.model import sample_features
from identity_tf.tasks.graph_matching.task import GraphMatchingData

__all__ = [
    "BackboneScaledAdam",
    "GraphMatchingConfig",
    "GraphMatchingData",
    "GraphMatchingNet",
    "SplineGraphConv",
    "WeightedInnerProductAffinity",
    "accuracy_per_class",
    "cartesian_attributes",
    "hamming_loss",
    "matching_accuracy",
    "sample_features",
]
