"""L2X on BeerAdvocate reviews (paper section 4.1, B.1): select k words with top-k, predict the aspect score.

:mod:`.model` (the Keras model, its MSE and rationale precision), :mod:`.task` (the trainer's task: data settings,
splits, evaluation, artifacts). The model's names are importable from here.
"""

from identity_tf.tasks.l2x import task as _task  # noqa: F401  (registers "l2x")
from identity_tf.tasks.l2x.model import *  # noqa: F401, F403
from identity_tf.tasks.l2x.model import __all__  # noqa: F401
from identity_tf.tasks.l2x.task import L2XData  # noqa: F401
