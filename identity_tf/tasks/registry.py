"""The task registry: one :class:`Task` interface that the trainer, the CLI, ``reproduce`` and the plots call.

A task is a sub-package of :mod:`identity_tf.tasks` (``identity_tf/tasks/<name>/``: model, data glue, plots and a
``task.py`` that registers it) or any class registered with :func:`register` (e.g. in a user's own package).
Nothing outside a task knows its name: the trainer looks a run config's ``task:`` up here (:func:`get`), and every
task-specific step (data, model, callbacks, evaluation, artifacts, the summary line, what ``identity-tf data``
builds) is a method of the task.

The pattern is Model Garden's ``Task`` / ``task_factory``: a registry of classes keyed by name, each holding its
own config dataclasses. Sub-packages are discovered on first lookup (:func:`discover`), so importing
:mod:`identity_tf` does not import every task's data code.

Example (a task defined outside the package; ``tests/tasks/test_registry_contract.py`` trains one):

    @identity_tf.tasks.register("my_task")
    class MyTask(identity_tf.tasks.Task):
        data_config = MyData
        model_config = MyModelConfig
        monitor, mode = "val_loss", "min"

        def datasets(self, config): ...
        def build_model(self, config, data): ...
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
import pkgutil
from typing import Any

from identity_tf.method import GRADIENTS

_REGISTRY: dict[str, type] = {}


@dataclasses.dataclass
class TaskData:
    """What :meth:`Task.datasets` returns.

    Attributes:
        splits: ``{"train", "val", "test"}`` -> batched ``tf.data.Dataset`` of ``(inputs, targets)``.
        data: The loaded arrays (whatever the task's model, callbacks, evaluation and plots need).
    """

    splits: dict
    data: Any = None


@dataclasses.dataclass
class DataOption:
    """A ``identity-tf data <task>`` flag: ``--<name>`` of ``type`` with ``default``."""

    name: str
    type: type
    default: Any
    help: str


class Task:
    """Base of the paper's tasks (and of users' own). Subclasses set the class attributes and override the methods.

    Attributes:
        name: Registry key (set by :func:`register`), the ``task:`` of a run config.
        data_config: Dataclass of the config's ``data:`` section.
        model_config: Dataclass of the ``model:`` section.
        model_from_data: ``{model key: data key}``: model settings taken from the data settings (e.g. ``k``).
        methods: The ``method.gradient`` values the task supports.
        monitor, mode: The validation metric that selects the tested checkpoint, and "max" or "min".
        data_options: The flags of ``identity-tf data <name>`` (:meth:`build_data` receives them).
        description: One line for ``--help``.
        tiny: Dotted overrides that make a run of any of the task's configs take seconds on tiny data (the
            registry's contract test uses them).
    """

    name: str = ""
    data_config: type = None
    model_config: type = None
    model_from_data: dict[str, str] = {}
    methods: tuple[str, ...] = GRADIENTS
    monitor: str = "val_loss"
    mode: str = "min"
    data_options: tuple[DataOption, ...] = ()
    description: str = ""
    tiny: dict = {}

    # ------------------------------------------------------------------------------------------ config
    def migrate(self, sections: dict) -> dict:
        """Rewrites the raw sections of an older config schema (default: unchanged). See ``dvae/task.py``."""
        return sections

    def check_method(self, method) -> None:
        """Refuses a ``method`` the task does not support (a ValueError naming the choices)."""
        if method.gradient not in self.methods:
            raise ValueError(
                f"Task {self.name!r} supports method.gradient in {self.methods}. Received: gradient={method.gradient!r}"
            )

    # -------------------------------------------------------------------------------------------- data
    def datasets(self, config) -> TaskData:
        """The batched splits of ``config`` (``config.train.batch_size``, shuffled training split)."""
        raise NotImplementedError(f"Task {self.name!r} does not define datasets(config)")

    def build_data(self, data_dir=None, **options) -> pathlib.Path:
        """Builds the task's dataset into the data directory (``identity-tf data <task>``); returns its folder."""
        raise NotImplementedError(f"Task {self.name!r} has no dataset to build")

    # ------------------------------------------------------------------------------------------- model
    def build_model(self, config, data: TaskData):
        """The (uncompiled) Keras model of ``config``; its own ``compile`` sets the task's loss and metrics."""
        raise NotImplementedError(f"Task {self.name!r} does not define build_model(config, data)")

    def compile(self, model, optimizer, jit_compile: bool) -> None:
        """Compiles ``model``; the loss and metrics are the model's own (``model.compile`` fills them in)."""
        model.compile(optimizer=optimizer, jit_compile=jit_compile)

    def callbacks(self, model, config, data: TaskData) -> list:
        """Extra Keras callbacks whose logs go into ``history.csv`` (diagnostics)."""
        return []

    # -------------------------------------------------------------------------------------------- after
    def evaluate(self, model, config, data: TaskData) -> dict[str, float]:
        """Extra test metrics of the tested weights (merged into ``metrics.json["test"]``)."""
        return {}

    def artifacts(self, model, config, data: TaskData, run_dir: pathlib.Path) -> list[pathlib.Path]:
        """Writes the task's plots and extra files into ``run_dir``; returns their paths."""
        return []

    def summary(self, test: dict[str, float]) -> str:
        """One line with the headline test metrics (printed by ``identity-tf train``)."""
        return "Test metrics: " + ", ".join(f"{key} {value:.4g}" for key, value in test.items())

    def describe_method(self, config) -> str:
        """The method part of a run's title (plots)."""
        m = config.method
        return f"{m.gradient}, projection {m.projection}" + (f", alpha {m.alpha:g}" if m.alpha else "")


def register(name: str):
    """Class decorator: registers a :class:`Task` subclass under ``name`` (the ``task:`` of run configs)."""

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"@register({name!r}) decorates a Task subclass. Received: {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"A task named {name!r} is already registered ({_REGISTRY[name].__module__}).")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def unregister(name: str) -> None:
    """Removes a registered task (for tests that register throwaway tasks)."""
    _REGISTRY.pop(name, None)


def discover() -> None:
    """Imports every task sub-package of :mod:`identity_tf.tasks` (each registers itself)."""
    package = importlib.import_module("identity_tf.tasks")
    for module in pkgutil.iter_modules(package.__path__):
        if module.ispkg:
            importlib.import_module(f"identity_tf.tasks.{module.name}")


def names() -> list[str]:
    """The registered task names (after discovery), sorted."""
    discover()
    return sorted(_REGISTRY)


def get(name: str) -> Task:
    """A new instance of the task registered as ``name``; an unknown name is a ValueError listing the known ones."""
    if name not in _REGISTRY:
        discover()
    if name not in _REGISTRY:
        raise ValueError(f"`task` must be one of {sorted(_REGISTRY)}. Received: task={name!r}")
    return _REGISTRY[name]()
