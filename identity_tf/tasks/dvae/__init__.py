"""Discrete VAE on MNIST (paper section 4.1, B.1): 20 groups of 10-hot latents through a top-k solver.

:mod:`.model` (the Keras model, its N-ELBO and the Fig. 7 gradient diagnostics), :mod:`.task` (the trainer's
task: data settings, splits, evaluation, artifacts). The model's names are importable from here.
"""

from identity_tf.tasks.dvae import task as _task  # noqa: F401  (registers "dvae")
from identity_tf.tasks.dvae.model import *  # noqa: F401, F403
from identity_tf.tasks.dvae.model import __all__  # noqa: F401
from identity_tf.tasks.dvae.task import DVAEData  # noqa: F401
