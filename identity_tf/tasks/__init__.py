"""The paper's experiments as plug-ins: one sub-package per task, found by the registry.

Each task is a folder ``identity_tf/tasks/<name>/`` with ``model.py`` (its Keras model, which owns its loss and
metrics), ``task.py`` (a :class:`Task` registered under ``<name>``: data settings, splits, callbacks, evaluation,
artifacts, summary, what ``identity-tf data <name>`` builds) and, where it draws any, ``plots.py``. The trainer,
the CLI, ``reproduce`` and the report know tasks only through :func:`get` and :func:`names`; adding a task adds a
folder (or a class registered with :func:`register` anywhere) and changes no shared file.

The folder is called ``tasks`` (not ``experiments``) because a run config names its task (``task: globe_tsp``),
and the paper's experiments are tasks in Model Garden's sense: data + model + loss + metrics behind one interface.
"""

import importlib as _importlib

from identity_tf.tasks.registry import DataOption
from identity_tf.tasks.registry import Task
from identity_tf.tasks.registry import TaskData
from identity_tf.tasks.registry import discover
from identity_tf.tasks.registry import get
from identity_tf.tasks.registry import names
from identity_tf.tasks.registry import register
from identity_tf.tasks.registry import unregister

# names that lived here before the task sub-packages (release 0.1); importable on first use
_MOVED = {
    "DVAEConfig": "identity_tf.tasks.dvae",
    "DiscreteVAE": "identity_tf.tasks.dvae",
    "GlobeTSP": "identity_tf.tasks.globe_tsp",
    "GlobeTSPConfig": "identity_tf.tasks.globe_tsp",
    "WarcraftConfig": "identity_tf.tasks.warcraft",
    "WarcraftShortestPath": "identity_tf.tasks.warcraft",
    "GradientNoiseLayer": "identity_tf.layers",
    "MethodConfig": "identity_tf.method",
}


def __getattr__(name):
    if name in _MOVED:
        return getattr(_importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'identity_tf.tasks' has no attribute {name!r}")


__all__ = [
    "DataOption",
    "Task",
    "TaskData",
    "discover",
    "get",
    "names",
    "register",
    "unregister",
]
