"""Look-up of gradient methods by name, config or object."""

from __future__ import annotations

import keras

from identity_tf.gradients.base import GradientMethod
from identity_tf.gradients.blackbox import Blackbox
from identity_tf.gradients.identity import Identity
from identity_tf.gradients.imle import IMLE
from identity_tf.gradients.perturbed import Perturbed

BY_NAME = {"identity": Identity, "blackbox": Blackbox, "imle": IMLE, "perturbed": Perturbed}


def get(method) -> GradientMethod:
    """Returns a gradient-method object for a name ("identity", "blackbox", "imle", "perturbed", with default
    hyperparameters), a Keras config dict, or an object (returned unchanged).

    Example:
    >>> import identity_tf as itf
    >>> itf.gradients.get("blackbox")
    Blackbox(lam=20.0)
    """
    if isinstance(method, GradientMethod):
        return method
    if isinstance(method, dict):
        method = keras.saving.deserialize_keras_object(method)
        if isinstance(method, GradientMethod):
            return method
    if isinstance(method, str) and method in BY_NAME:
        return BY_NAME[method]()
    raise ValueError(
        f"Unknown gradient method. Expected one of {sorted(BY_NAME)} or a GradientMethod object. "
        f"Received: gradient={method!r}"
    )
