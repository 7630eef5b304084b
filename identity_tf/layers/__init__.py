"""Keras layers: thin wrappers over solvers, gradient methods, projections and noise."""

from identity_tf.layers.batch_memory import BatchMemory
from identity_tf.layers.gradient_noise import GradientNoiseLayer
from identity_tf.layers.gumbel_topk import GumbelSoftmaxTopK
from identity_tf.layers.noise_margin_layer import NoiseMarginLayer
from identity_tf.layers.projection_layer import ProjectionLayer
from identity_tf.layers.relaxed_subset import RelaxedSubset
from identity_tf.layers.solver_layer import SolverLayer
from identity_tf.layers.sum_of_gamma_noise import SumOfGammaNoise

__all__ = [
    "BatchMemory",
    "GradientNoiseLayer",
    "GumbelSoftmaxTopK",
    "NoiseMarginLayer",
    "ProjectionLayer",
    "RelaxedSubset",
    "SolverLayer",
    "SumOfGammaNoise",
]
