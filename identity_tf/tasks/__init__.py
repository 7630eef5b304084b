"""The paper's experiments as Keras models (one module per task)."""

from identity_tf.tasks.common import GradientNoiseLayer
from identity_tf.tasks.dvae import DiscreteVAE
from identity_tf.tasks.dvae import DVAEConfig
from identity_tf.tasks.common import MethodConfig
from identity_tf.tasks.globe_tsp import GlobeTSP
from identity_tf.tasks.globe_tsp import GlobeTSPConfig
from identity_tf.tasks.warcraft import WarcraftConfig
from identity_tf.tasks.warcraft import WarcraftShortestPath

__all__ = [
    "DVAEConfig",
    "DiscreteVAE",
    "GlobeTSP",
    "GlobeTSPConfig",
    "GradientNoiseLayer",
    "MethodConfig",
    "WarcraftConfig",
    "WarcraftShortestPath",
]
