"""Base of the task models: config dataclasses in, ``get_config`` out, and the model's own loss and metrics."""

from __future__ import annotations

import dataclasses

import keras

from identity_tf.method import MethodConfig, as_method, split_legacy, upgrade_release_0_1
from identity_tf.tasks.legacy import legacy_method

SCHEMA = 2  # get_config's layout; configs without "schema" were saved by release 0.1


def as_config(cls, value):
    """``None`` -> defaults, a dict (from ``get_config``) -> ``cls(**dict)``, an instance -> itself."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    return cls(**value)


class TaskModel(keras.Model):
    """Holds the task's model config, the :class:`identity_tf.method.MethodConfig` and the seed, serialises them,
    and owns its loss and metrics: ``compile(optimizer)`` without ``loss`` / ``metrics`` uses
    :meth:`default_loss` / :meth:`default_metrics`, so ``model.fit`` and the multi-worker loop run the same step.

    Subclasses set ``config_class`` (and, for configs of releases before 0.2 that kept the method in the model
    section, ``legacy_method_keys = (renames, old defaults)``), and build their layers after ``super().__init__``.
    """

    config_class: type = None
    legacy_method_keys: tuple[dict, dict] | None = None

    def __init__(self, config=None, method: MethodConfig | dict | None = None, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict) and self.legacy_method_keys is not None:
            config, legacy = split_legacy(config, *self.legacy_method_keys)
            if legacy is not None and method is None:
                method = legacy_method(legacy)
        self.task_config = as_config(self.config_class, config)
        self.method = as_method(method)
        self.seed = seed

    def default_loss(self):
        """The task's training loss (per example; Keras averages over the batch)."""
        raise NotImplementedError(f"{type(self).__name__} defines no default_loss()")

    def default_metrics(self) -> list:
        """The task's compiled metrics (beyond the loss)."""
        return []

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        loss = self.default_loss() if loss is None else loss
        metrics = self.default_metrics() if metrics is None else metrics
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.pop("schema", None) is None and isinstance(config.get("method"), dict):  # saved by release 0.1
            config["method"] = upgrade_release_0_1(config["method"])
        return cls(**config)

    def get_config(self):
        return {
            **super().get_config(),
            "schema": SCHEMA,
            "config": dataclasses.asdict(self.task_config),
            "method": dataclasses.asdict(self.method),
            "seed": self.seed,
        }
