"""Config -> data -> model -> strategy -> fit/evaluate -> run directory.

A run is described by a YAML file (one per paper-table row, under ``configs/<task>/``) with the sections
``task``, ``data``, ``model``, ``method``, ``train`` and an optional ``quick`` block of dotted overrides used by
``--quick``. Every section is validated against a dataclass: an unknown key is an error that lists the valid ones,
and every value is checked by type and range when the config loads (:mod:`identity_tf.validation`).

The task of a config (``task:``) is looked up in :mod:`identity_tf.tasks.registry`; this module never looks past
the :class:`identity_tf.tasks.Task` interface. One engine trains every task: ``model.fit`` (default and mirrored
strategies) or, for ``multi_worker``, the loop of :mod:`identity_tf.distributed`, which runs the same model-owned
train step with the same callbacks (learning-rate schedule, margin-noise schedule, health checks, backup) and
resumes after a kill in the same way.

The run directory holds ``config.yaml`` (resolved), ``history.csv``, ``metrics.json`` (status and test metrics of the
best-validation checkpoint; written last), ``best.weights.h5``, ``model.keras`` and PNG plots, each written
atomically. An interrupted run resumes where it stopped when started again with the same ``--out``
(:mod:`identity_tf.backup`, state under ``backup/``); the rules for reusing a directory and its lock are
:mod:`identity_tf.run_dir`'s; every epoch is checked for divergence and collapse by :mod:`identity_tf.run_health`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pathlib
import time
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import yaml

from identity_tf import layers
from identity_tf import run_dir as run_dir_lib
from identity_tf import validation
from identity_tf.backup import Backup, weights_bytes
from identity_tf.method import MethodConfig
from identity_tf.run_health import RunHealth, TrainingDiverged
from identity_tf.tasks import registry
from identity_tf.tasks.registry import Task, TaskData
from identity_tf.validation import ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker")
OPTIMIZERS = ("adam", "sgd")


# ------------------------------------------------------------------------------------------------- configs
@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings.

    Attributes:
        epochs: Training epochs.
        batch_size: Global batch size.
        learning_rate: Learning rate of the optimizer.
        optimizer: "adam" (the paper's runs) or "sgd" (paper Fig. 6 compares them on the DVAE).
        momentum: SGD momentum (``optimizer: sgd`` only).
        lr_milestones: Epochs after which the learning rate is multiplied by ``lr_factor``.
        lr_factor: Learning-rate decay factor.
        seed: Seed of weights, noise and shuffling.
        jit_compile: XLA-compile the train step ("auto": when every solver in the model is pure TF).
        collapse_patience: A run whose predictions or solver inputs stay collapsed (constant) for this many
            consecutive epochs is marked ``"status": "collapsed"`` in ``metrics.json`` (0 = never); see
            :class:`identity_tf.run_health.RunHealth`.
    """

    epochs: int = 10
    batch_size: int = 50
    learning_rate: float = 1e-4
    optimizer: str = "adam"
    momentum: float = 0.0
    lr_milestones: list[int] = dataclasses.field(default_factory=list)
    lr_factor: float = 0.1
    seed: int = 0
    jit_compile: bool | str = "auto"
    collapse_patience: int = 3

    def __post_init__(self):
        if self.jit_compile not in (True, False, "auto"):
            raise ValueError(
                f"`train.jit_compile` must be true, false or 'auto'. Received: jit_compile={self.jit_compile!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"`train.optimizer` must be one of {OPTIMIZERS}. Received: optimizer={self.optimizer!r}")
        if self.optimizer == "adam" and self.momentum:
            raise ValueError(f"`train.momentum` applies to optimizer sgd only. Received: momentum={self.momentum!r}")

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(self.learning_rate, momentum=self.momentum)
        return keras.optimizers.Adam(self.learning_rate)


@dataclasses.dataclass
class RunConfig:
    task: str
    data: Any
    model: Any
    method: MethodConfig
    train: TrainConfig

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "data": dataclasses.asdict(self.data),
            "model": dataclasses.asdict(self.model),
            "method": dataclasses.asdict(self.method),
            "train": dataclasses.asdict(self.train),
        }


def _check_keys(section: str, values: dict, cls: type, exclude: tuple[str, ...] = ()) -> None:
    valid = [f.name for f in dataclasses.fields(cls) if f.name not in exclude]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(f"Unknown key(s) {unknown} in section `{section}`. Valid keys: {valid}")


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    section, sep, key = dotted.partition(".")
    if not sep or not key:
        raise ConfigError(f"Overrides are `section.key=value` (e.g. train.epochs=5). Received: {dotted!r}")
    if section not in ("data", "model", "method", "train"):
        raise ConfigError(f"Unknown section {section!r} in override {dotted!r}. Valid: data, model, method, train")
    if tree.get(section) is None:
        tree[section] = {}
    if not isinstance(tree[section], dict):
        raise ConfigError(f"Section `{section}` must be a mapping. Received: {tree[section]!r}")
    tree[section][key] = value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.epochs=5", ...]`` -> ``{"train.epochs": 5}`` (values parsed as YAML scalars)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"`--set` expects key=value. Received: {item!r}")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ConfigError(
                f"`--set {item}`: the value is not a YAML scalar ({error}). Received: {value!r}"
            ) from None
        out[key.strip()] = _number(parsed)
    return out


def _number(value):
    """YAML 1.1 reads ``1e-3`` as a string; turn such strings into floats."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_config(path_or_dict, overrides: dict[str, Any] | None = None, quick: bool = False) -> RunConfig:
    """Reads and validates a run config; applies the ``quick`` block (if ``quick``) and then ``overrides``."""
    if isinstance(path_or_dict, dict):
        raw = copy.deepcopy(path_or_dict)
    else:
        path = pathlib.Path(path_or_dict)
        if not path.is_file():
            raise ConfigError(f"Config file not found. Received: {str(path)!r}")
        raw = _read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"A config is a mapping of sections. Received: {type(raw).__name__}")
    valid_top = ["task", "data", "model", "method", "train", "quick"]
    unknown = sorted(set(raw) - set(valid_top))
    if unknown:
        raise ConfigError(f"Unknown top-level key(s) {unknown}. Valid keys: {valid_top}")
    name = raw.get("task")
    try:
        task = registry.get(name)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    quick_block = raw.pop("quick", None) or {}
    if not isinstance(quick_block, dict):
        raise ConfigError(f"`quick` must be a mapping of dotted keys to values. Received: {quick_block!r}")
    if quick:
        for dotted, value in quick_block.items():
            _set_dotted(raw, dotted, value)
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    sections = {name: raw.get(name) or {} for name in ("data", "model", "method", "train")}
    for section, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(f"Section `{section}` must be a mapping. Received: {values!r}")
    try:
        sections = task.migrate(sections)  # an older schema of this task's sections (release 0.1's DVAE / L2X)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    _check_method_section(sections["method"])
    # a resolved config (config.yaml) repeats the model keys set from the data; they must agree with it
    given = {key: sections["model"][key] for key in task.model_from_data if key in sections["model"]}
    sections["model"] = {key: value for key, value in sections["model"].items() if key not in given}
    classes = {"data": task.data_config, "model": task.model_config, "method": MethodConfig, "train": TrainConfig}
    _check_keys("data", sections["data"], task.data_config)
    _check_keys("model", sections["model"], task.model_config, exclude=tuple(task.model_from_data))
    _check_keys("method", sections["method"], MethodConfig)
    _check_keys("train", sections["train"], TrainConfig)
    # types and ranges from the dataclasses' annotations, before anything is built (ConfigError names the key)
    values = {section: validation.check_section(section, classes[section], sections[section]) for section in classes}
    try:
        data = task.data_config(**values["data"])
        model_values = dict(values["model"])
        for model_key, data_key in task.model_from_data.items():
            model_values[model_key] = getattr(data, data_key)
            if model_key in given and given[model_key] != model_values[model_key]:
                raise ConfigError(
                    f"`model.{model_key}` is set from `data.{data_key}` ({model_values[model_key]!r}); leave it out. "
                    f"Received: model.{model_key}={given[model_key]!r}"
                )
        method = MethodConfig(**values["method"])
        task.check_method(method)
        return RunConfig(
            task=name,
            data=data,
            model=task.model_config(**model_values),
            method=method,
            train=TrainConfig(**values["train"]),
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from error


def _check_method_section(method: dict) -> None:
    """``auto`` with a baseline: release 0.1 read it as "none"; it now means std/norm for every gradient."""
    if method.get("projection") == "auto" and method.get("gradient", "identity") != "identity":
        raise ConfigError(
            "`method.projection: auto` now means the same for every gradient (std when the solver's solutions lie on "
            "a hyperplane, else norm); release 0.1 ran the baselines unprojected with auto. Write `projection: none` "
            f"for that, or name std / norm. Received: gradient={method.get('gradient')!r}, projection='auto'"
        )


def _read_yaml(path: pathlib.Path):
    """The parsed YAML file; a syntax error is a ConfigError naming the file and line."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error)
        lines = path.read_text().splitlines()
        line = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
        raise ConfigError(f"Malformed YAML in {where}: {problem}. Received: {line!r}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not a text (UTF-8) YAML file: {error}. Received: {path}") from None


# -------------------------------------------------------------------------------------------------- callbacks
class NoiseSchedule(keras.callbacks.Callback):
    """Margin noise for the first ``noise_epochs`` epochs, then off (paper B.4: the first 50 of 100 epochs)."""

    def __init__(self, alpha: float, noise_epochs: int | None):
        super().__init__()
        self.alpha, self.noise_epochs = alpha, noise_epochs

    def on_epoch_begin(self, epoch, logs=None):
        alpha = self.alpha if self.noise_epochs is None or epoch < self.noise_epochs else 0.0
        for layer in _margin_layers(self.model):
            layer.set_alpha(alpha)


def _margin_layers(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, layers.NoiseMarginLayer)]


def _lr_schedule(config: TrainConfig):
    def schedule(epoch, lr):
        drops = sum(epoch >= m for m in config.lr_milestones)
        return config.learning_rate * config.lr_factor**drops

    return keras.callbacks.LearningRateScheduler(schedule)


# ---------------------------------------------------------------------------------------------------- training
def make_strategy(name: str):
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        if gpus:
            warnings.warn(
                "identity-tf: --strategy mirrored found one GPU, so MirroredStrategy trains on 1 replica (no data "
                "parallelism; the same as --strategy default).",
                RuntimeWarning,
                stacklevel=2,
            )
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        # Without GPUs: all logical CPU devices (tests configure two), reduced on one device. Collective
        # all-reduce between CPU devices broke when a second strategy was made in the same process
        # ("Shape mismatch in the collective instance"), seen in this project's test suite.
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) == 1:
            warnings.warn(
                "identity-tf: --strategy mirrored found no GPU and one CPU device, so MirroredStrategy trains on 1 "
                "replica (no data parallelism; the same as --strategy default). Several logical CPU devices can be "
                "configured with tf.config.set_logical_device_configuration before training.",
                RuntimeWarning,
                stacklevel=2,
            )
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _jit(config: RunConfig, model, strategy=None) -> bool:
    from identity_tf import execution  # the measured policy of `train.jit_compile: auto` (see its docstring)

    return execution.resolve(config.train.jit_compile, model, strategy)


def build_and_compile(config: RunConfig, task: Task, strategy, data: TaskData, sample=None) -> keras.Model:
    """Builds (on ``sample``, a batch of inputs, so that callbacks can restore weights) and compiles the model.

    The loss and metrics are the model's own (:meth:`identity_tf.tasks.Task.compile`), so ``model.fit`` and the
    multi-worker loop run the same train step.
    """
    with strategy.scope():
        model = task.build_model(config, data)
        if sample is not None:
            model(sample)
        # XLA x MirroredStrategy: see identity_tf/execution.py
        task.compile(model, config.train.make_optimizer(), jit_compile=_jit(config, model, strategy))
    return model


def _first_batches(splits: dict, config: RunConfig) -> dict:
    """The first batch of each split; an empty split is a ConfigError (before any training)."""
    batches = {}
    for name in ("train", "val", "test"):
        batch = next(iter(splits[name].take(1)), None)
        if batch is None:
            raise ConfigError(
                f"The {name} split has no examples; enlarge it (data.max_*, data.num_*, data.val_fraction). "
                f"Received: data={dataclasses.asdict(config.data)}"
            )
        batches[name] = batch
    return batches


def _hint(config: RunConfig, run_dir: pathlib.Path) -> str:
    return (
        f"Try a smaller train.learning_rate (received {config.train.learning_rate:g} with optimizer "
        f"{config.train.optimizer}). Finished epochs, if any, are in {run_dir / 'history.csv'}."
    )


def _resolve_saved(saved: dict) -> dict:
    """A saved ``config.yaml`` as this release resolves it (so a run of an older schema is the same run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_config(saved).to_dict()


def train(
    config: RunConfig,
    out_dir: str | os.PathLike,
    strategy: str = "default",
    verbose: int | str = "auto",
    plots: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Trains one run into the run directory ``out_dir``; returns its metrics (what ``metrics.json`` holds).

    ``out_dir`` is locked for the training (:class:`identity_tf.run_dir.RunLock`) and reused by the rules of
    :func:`identity_tf.run_dir.prepare`: a finished run of the same config is not trained again (its saved metrics
    are returned, with ``"reused": True``), an unfinished one resumes from its last intact backup
    (:class:`identity_tf.backup.Backup`), another config is refused unless ``overwrite`` (which clears the
    directory). Every epoch is checked outside the compiled step (:class:`identity_tf.run_health.RunHealth`):
    non-finite values raise :class:`TrainingDiverged`; a lasting collapse sets ``metrics["status"] = "collapsed"``.
    Under ``multi_worker`` the chief (worker 0) owns the run directory; the other workers resume from its backup.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={strategy!r}")
    task = registry.get(config.task)
    run_dir = pathlib.Path(out_dir)
    if strategy == "multi_worker":
        from identity_tf import distributed

        if not distributed.is_chief():  # the chief owns the run directory; the others only read its state
            state = run_dir_lib.prepare(run_dir, config.to_dict(), overwrite, read_only=True, normalize=_resolve_saved)
            if state.status == "finished":
                return {**state.metrics, "reused": True}
            return _run(config, task, run_dir, strategy, verbose, plots)
    with run_dir_lib.RunLock(run_dir):
        state = run_dir_lib.prepare(run_dir, config.to_dict(), overwrite=overwrite, normalize=_resolve_saved)
        if state.status == "finished":
            return {**state.metrics, "reused": True}
        return _run(config, task, run_dir, strategy, verbose, plots)


def _run(config: RunConfig, task: Task, run_dir: pathlib.Path, strategy: str, verbose, plots: bool) -> dict:
    """Trains into a prepared run directory (locked by the chief) with ``model.fit`` or the multi-worker loop."""
    multi_worker = strategy == "multi_worker"
    dist = make_strategy(strategy)  # MultiWorkerMirroredStrategy: before any op touches the devices
    chief, worker = True, 0
    if multi_worker:
        from identity_tf import distributed

        chief, worker = distributed.is_chief(), distributed.worker_index(dist)
    keras.utils.set_random_seed(config.train.seed)
    data = task.datasets(config)
    batches = _first_batches(data.splits, config)
    model = build_and_compile(config, task, dist, data, sample=batches["train"][0])
    hint = _hint(config, run_dir)
    health = RunHealth(batches["val"], batches["train"], patience=config.train.collapse_patience, hint=hint)
    out = run_dir if chief else run_dir / f"worker_{worker}"  # a worker's scratch: its own copy of the backup
    backup = Backup(out, task.monitor, task.mode, stateful=[health])
    with dist.scope():
        initial_epoch = backup.restore(model, source=None if chief else run_dir / "backup")
    if multi_worker:
        distributed.check_same_epoch(dist, initial_epoch, run_dir)
    # order of the epoch-end calls: checks (raise before anything is saved), the task's callbacks and the learning
    # rate (their logs go into the history), then the backup that commits the epoch
    callbacks = [health, *task.callbacks(model, config, data), _lr_schedule(config.train), backup]
    if config.method.alpha > 0:
        callbacks.append(NoiseSchedule(config.method.alpha, config.method.noise_epochs))
    callbacks.append(keras.callbacks.TerminateOnNaN())
    start = time.perf_counter()
    try:
        if multi_worker:
            losses = distributed.fit(
                model, dist, data.splits, callbacks, initial_epoch, config.train.epochs, verbose=verbose and chief
            )
        else:
            history = model.fit(
                data.splits["train"],
                validation_data=data.splits["val"],
                initial_epoch=initial_epoch,
                epochs=config.train.epochs,
                callbacks=callbacks,
                shuffle=False,  # the tf.data pipeline shuffles
                verbose=verbose,
            )
            losses = history.history.get("loss", [0.0])
    except tf.errors.InvalidArgumentError as error:  # a solver's finite check (NaN/inf costs), outside XLA
        if "non-finite" not in error.message:
            raise
        what = next(line.strip() for line in error.message.splitlines() if "non-finite" in line)
        raise TrainingDiverged(f"Training diverged in epoch {len(backup.rows) + 1} ({what}). {hint}") from error
    if model.stop_training and not all(np.isfinite(losses)):  # TerminateOnNaN
        raise TrainingDiverged(
            f"Training diverged in epoch {len(backup.rows) + 1} (the training loss became NaN or inf). {hint}"
        )
    train_seconds = time.perf_counter() - start
    with dist.scope():
        best_epoch = backup.finish(model)
    if multi_worker:
        test = distributed.evaluate(model, dist, data.splits["test"])
    else:
        test = {k: float(v) for k, v in model.evaluate(data.splits["test"], return_dict=True, verbose=0).items()}
    test.update({k: float(v) for k, v in task.evaluate(model, config, data).items()})
    epochs_run = config.train.epochs - initial_epoch
    metrics = {
        "status": "collapsed" if health.collapse else "ok",
        "test": test,
        "best_epoch": best_epoch,  # 0-based epoch of the tested weights (None: the last epoch's)
        "train_seconds": train_seconds,  # this process's share (a resumed run: since the resume)
        "seconds_per_epoch": train_seconds / epochs_run if epochs_run > 0 else None,
        "epochs": config.train.epochs,
        "resumed_at_epoch": initial_epoch,
        "strategy": strategy,
        "replicas": dist.num_replicas_in_sync,
    }
    if multi_worker:
        metrics["workers"] = distributed.num_workers()
    if health.collapse:
        metrics["collapse"] = health.collapse
    if health.episodes:
        metrics["collapse_episodes"] = health.episodes
    if health.cost_collapse:  # the costs shrank towards zero (paper 3.6); the status stays "ok"
        metrics["cost_collapse"] = health.cost_collapse
    if chief:
        run_dir_lib.atomic_write(
            run_dir / "model.keras", lambda tmp: model.save(str(tmp)), needed_bytes=weights_bytes(model)
        )
    if plots:  # every worker: a task's plots may predict, and predictions under multi_worker are collective
        task.artifacts(model, config, data, out)
    if plots and chief:
        from identity_tf import plots as plots_lib

        markers = {"best_epoch": best_epoch, "noise_off_epoch": _noise_off_epoch(config)}
        run_dir_lib.atomic_write(
            run_dir / "learning_curves.png",
            lambda tmp: plots_lib.learning_curves(
                run_dir / "history.csv", tmp, title=run_title(config, run_dir), **markers
            ),
        )
    run_dir_lib.atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))  # last: "finished"
    backup.discard()
    return metrics


def _noise_off_epoch(config: RunConfig) -> int | None:
    """0-based first epoch without margin noise (None: no schedule)."""
    if config.method.alpha > 0 and config.method.noise_epochs is not None:
        return config.method.noise_epochs if config.method.noise_epochs < config.train.epochs else None
    return None


def run_title(config: RunConfig, run_dir: pathlib.Path) -> str:
    """One line naming a run for plots: directory, task, method and the main training settings."""
    how = registry.get(config.task).describe_method(config)
    t = config.train
    return f"{pathlib.Path(run_dir).name}: {config.task}, {how}; {t.optimizer} lr {t.learning_rate:g}, batch {t.batch_size}"
