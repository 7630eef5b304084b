"""Gradient methods: a solver becomes a differentiable function (``tf.custom_gradient``)."""

from identity_tf.gradients.base import GradientMethod
from identity_tf.gradients.blackbox import Blackbox
from identity_tf.gradients.blackbox import blackbox
from identity_tf.gradients.identity import Identity
from identity_tf.gradients.identity import identity
from identity_tf.gradients.imle import IMLE
from identity_tf.gradients.imle import imle
from identity_tf.gradients.perturbed import Perturbed
from identity_tf.gradients.perturbed import fenchel_young_loss
from identity_tf.gradients.perturbed import perturbed
from identity_tf.gradients.registry import get

__all__ = [
    "Blackbox",
    "GradientMethod",
    "IMLE",
    "Identity",
    "Perturbed",
    "blackbox",
    "fenchel_young_loss",
    "get",
    "identity",
    "imle",
    "perturbed",
]
