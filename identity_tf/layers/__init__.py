"""Keras layers: thin wrappers over solvers, gradient methods, projections and noise."""

from identity_tf.layers.batch_memory import BatchMemory
from identity_tf.layers.noise_margin_layer import NoiseMarginLayer
from identity_tf.layers.projection_layer import ProjectionLayer
from identity_tf.layers.solver_layer import SolverLayer

__all__ = [
    "BatchMemory",
    "NoiseMarginLayer",
    "ProjectionLayer",
    "SolverLayer",
]
