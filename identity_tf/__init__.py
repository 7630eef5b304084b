"""identity_tf: combinatorial solvers as trainable TensorFlow / Keras 3 layers.

Implements Sahoo et al., "Backpropagation through Combinatorial Algorithms: Identity with Projection Works"
(ICLR 2023) and the methods it compares with (Blackbox Backpropagation, I-MLE, perturbed optimizers).
"""

import os as _os
import sys as _sys


def _is_cli() -> bool:
    """True in the ``identity-tf`` command (console script or ``python -m identity_tf.cli``)."""
    argv = list(getattr(_sys, "orig_argv", None) or _sys.argv)
    script = _os.path.basename(_sys.argv[0]) if _sys.argv else ""
    return script in ("identity-tf", "cli.py") or any(
        a == "-m" and b == "identity_tf.cli" for a, b in zip(argv, argv[1:])
    )


# The command line is quiet by default (TensorFlow reads this variable when it is first imported). Library users keep
# their own setting.
_CLI = _is_cli()
if _CLI:
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_backend = _os.environ.get("KERAS_BACKEND", "tensorflow")
if _backend != "tensorflow":
    raise ImportError(
        "identity_tf needs the TensorFlow Keras backend. Set KERAS_BACKEND=tensorflow before importing Keras. "
        f"Received: KERAS_BACKEND={_backend!r}"
    )

__version__ = "0.1.0"

_SUBMODULES = ("gradients", "layers", "losses", "method", "metrics", "noise", "projections", "solvers", "tasks")

if _CLI:
    # `identity-tf --help` must not pay TensorFlow's import (seconds): the command imports what it needs, and the
    # package's submodules load on first attribute access.
    def __getattr__(name):
        if name in _SUBMODULES:
            import importlib

            return importlib.import_module(f"identity_tf.{name}")
        raise AttributeError(f"module 'identity_tf' has no attribute {name!r}")

else:
    from identity_tf import gradients  # noqa: E402
    from identity_tf import layers  # noqa: E402
    from identity_tf import losses  # noqa: E402
    from identity_tf import metrics  # noqa: E402
    from identity_tf import noise  # noqa: E402
    from identity_tf import projections  # noqa: E402
    from identity_tf import solvers  # noqa: E402

    from identity_tf import method  # noqa: E402

    # This facade sits above every layer: discovering the task sub-packages registers their Keras classes, so a
    # run's `model.keras` loads after `import identity_tf` alone. The core modules above never import the tasks
    # (tests/test_structure.py walks the import graph); the tasks' data code loads on first use.
    from identity_tf.tasks import registry as _registry  # noqa: E402

    _registry.discover()

__all__ = [
    "__version__",
    "gradients",
    "layers",
    "losses",
    "method",
    "metrics",
    "noise",
    "projections",
    "solvers",
]
