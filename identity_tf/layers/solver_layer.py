"""Keras layer wrapping a solver and a gradient method."""

from __future__ import annotations

import keras
import tensorflow as tf

from identity_tf import gradients as gradients_lib
from identity_tf._utils import compute_dtype
from identity_tf.solvers import base as solvers_base


@keras.saving.register_keras_serializable(package="identity_tf")
class SolverLayer(keras.layers.Layer):
    """A combinatorial solver as a trainable-through Keras layer.

    The forward pass calls ``solver(costs)``; the backward pass is the chosen gradient method: the paper's
    Identity (default), Blackbox Backpropagation, I-MLE or a perturbed optimizer. Compose it after a
    :class:`ProjectionLayer` and a :class:`NoiseMarginLayer` as in the paper (``costs -> noise -> P -> solver``).

    Half-precision costs (``mixed_float16``) are solved in float32 and the solution is cast back to the layer's
    compute dtype. A layer whose solver runs on the host (``solver.xla == False``) sets ``supports_jit=False``,
    so Keras does not try to XLA-compile a model that contains it.

    Reference: Sahoo et al., "Backpropagation through Combinatorial Algorithms: Identity with Projection
    Works", ICLR 2023.

    Args:
        solver: A solver from :mod:`identity_tf.solvers`.
        gradient: "identity", "blackbox", "imle", "perturbed", or a gradient object such as
            ``itf.gradients.Blackbox(lam=20.0)``.
        seed: Seed of the layer's noise (I-MLE, perturbed); None draws a random seed.
        **kwargs: Base ``Layer`` arguments (name, dtype, ...).

    Call arguments:
        costs: Cost tensor, batch first, as the solver expects; a tuple for structured solvers
            (``GraphMatching``: ``(unary, pairwise, edges1, edges2[, num_nodes1, num_nodes2])``, returning
            ``(x, z)``).
        training: Stochastic methods sample noise only when training (unless configured otherwise).

    Input shape: the solver's input shape. Output shape: the solver's output shape.

    Example:
    >>> import numpy as np
    >>> import identity_tf as itf
    >>> layer = itf.layers.SolverLayer(itf.solvers.TopK(k=1), gradient="identity")
    >>> layer(np.array([[0.2, 0.9, 0.1]], "float32")).numpy()
    array([[0., 1., 0.]], dtype=float32)
    """

    def __init__(self, solver, gradient="identity", seed=None, **kwargs):
        super().__init__(**kwargs)
        solver = solvers_base.deserialize(solver)
        self.solver = solver
        self.gradient = gradients_lib.get(gradient)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.gradient.stochastic else None
        self.supports_jit = bool(solver.xla)

    def build(self, input_shape):
        # Shape errors (e.g. TopK(k=30) on 20 inputs) surface when the model is built, not in the first fit step.
        structured = isinstance(input_shape, (tuple, list)) and all(isinstance(d, (tuple, list)) for d in input_shape)
        if structured or (
            isinstance(input_shape, (tuple, list)) and all(d is None or isinstance(d, int) for d in input_shape)
        ):
            try:  # structured solvers (graph matching) check the tuple of their inputs' shapes
                self.solver.check_shape(tuple(input_shape) if structured else tf.TensorShape(input_shape))
            except ValueError as error:
                raise ValueError(
                    f"SolverLayer {self.name!r} cannot solve inputs of shape {tuple(input_shape)}: {error}"
                ) from error
        super().build(input_shape)

    def call(self, costs, training=None):
        if isinstance(costs, (tuple, list)):  # structured costs (graph matching): cast the floating parts only
            inner = tuple(
                tf.cast(c, compute_dtype(c)) if c.dtype.is_floating else c for c in map(tf.convert_to_tensor, costs)
            )
            solution = self.gradient(self.solver, inner, seed=self.seed_generator, training=bool(training))
            return tuple(tf.cast(part, self.compute_dtype) for part in solution)
        costs = tf.convert_to_tensor(costs)
        inner = tf.cast(costs, compute_dtype(costs))
        solution = self.gradient(self.solver, inner, seed=self.seed_generator, training=bool(training))
        return tf.cast(solution, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        if hasattr(self.solver, "compute_output_shape"):  # structured solvers (graph matching): tuples of shapes
            return self.solver.compute_output_shape(input_shape)
        if isinstance(self.solver, solvers_base.HostSolver):
            shape = tf.TensorShape(input_shape)
            return tuple(tf.TensorShape([shape[0]]).concatenate(self.solver.output_shape(shape[1:])).as_list())
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "solver": solvers_base.serialize(self.solver),
            "gradient": keras.saving.serialize_keras_object(self.gradient),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["solver"] = solvers_base.deserialize(config["solver"])
        config["gradient"] = gradients_lib.get(config["gradient"])
        return cls(**config)
