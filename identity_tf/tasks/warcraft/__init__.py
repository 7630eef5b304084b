"""Warcraft shortest path (paper B.5, Vlastelica et al. 2020): terrain costs from map images, through a solver.

:mod:`.model` (the Keras model, loss and metrics), :mod:`.task` (the trainer's task), :mod:`.plots` (paths on maps).
"""

from identity_tf.tasks.warcraft import task as _task  # noqa: F401  (registers "warcraft")
from identity_tf.tasks.warcraft.model import WarcraftConfig
from identity_tf.tasks.warcraft.model import WarcraftShortestPath
from identity_tf.tasks.warcraft.model import cost_ratio
from identity_tf.tasks.warcraft.model import exact_path_accuracy
from identity_tf.tasks.warcraft.model import hamming_loss
from identity_tf.tasks.warcraft.model import resnet18_stem
from identity_tf.tasks.warcraft.task import WarcraftData

__all__ = [
    "WarcraftConfig",
    "WarcraftData",
    "WarcraftShortestPath",
    "cost_ratio",
    "exact_path_accuracy",
    "hamming_loss",
    "resnet18_stem",
]
