"""identity_tf: combinatorial solvers as trainable TensorFlow / Keras 3 layers.

Implements Sahoo et al., "Backpropagation through Combinatorial Algorithms: Identity with Projection Works"
(ICLR 2023) and the methods it compares with (Blackbox Backpropagation, I-MLE, perturbed optimizers).
"""

import os as _os
import sys as _sys

# The command line is quiet by default (TensorFlow reads this variable when it is first imported, which happens
# below, before `identity_tf.cli.main` runs). Library users keep their own setting.
if _sys.argv and _os.path.basename(_sys.argv[0]) in ("identity-tf", "cli.py"):
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_backend = _os.environ.get("KERAS_BACKEND", "tensorflow")
if _backend != "tensorflow":
    raise ImportError(
        "identity_tf needs the TensorFlow Keras backend. Set KERAS_BACKEND=tensorflow before importing Keras. "
        f"Received: KERAS_BACKEND={_backend!r}"
    )

from identity_tf import gradients  # noqa: E402
from identity_tf import layers  # noqa: E402
from identity_tf import losses  # noqa: E402
from identity_tf import metrics  # noqa: E402
from identity_tf import noise  # noqa: E402
from identity_tf import projections  # noqa: E402
from identity_tf import solvers  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "gradients",
    "layers",
    "losses",
    "metrics",
    "noise",
    "projections",
    "solvers",
]
