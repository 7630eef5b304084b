"""The multi-worker driver of the training engine: ``MultiWorkerMirroredStrategy`` without ``model.fit``.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (DESIGN.md section 8), so :func:`fit` drives
the epochs itself. It is only a driver: each step runs the model's own ``train_step`` / ``test_step`` (the loss
and metrics the model compiled, e.g. the DVAE's KL ``add_loss`` and its ``nelbo`` / ``kl`` / ``bce`` trackers)
inside ``strategy.run``, and the engine's callbacks (:mod:`identity_tf.train`: learning-rate and margin-noise
schedules, health checks, the backup that makes a run resumable) see the same calls as under ``fit``. Metrics are
Keras' (synchronised on read, so every worker reads the sums over all workers), weighted by examples.

A worker whose share of the last, partial global batch is empty takes part in every collective without a forward
pass (TensorFlow's oneDNN CPU kernels fail on empty batches): a zero gradient for the optimizer's all-reduce and no
metric update. Each worker process runs the same command with its own ``TF_CONFIG``; the chief (task 0) writes the
run directory, the others a scratch folder ``worker_<i>/``. After a kill, every worker resumes from the chief's
backup (``<run dir>/backup``, so the run directory must be on a filesystem the workers share, as for a resumed
``fit``); :func:`check_same_epoch` refuses to go on if they restored different epochs.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf


def _tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def is_chief() -> bool:
    """Whether this process is the chief of the cluster in ``TF_CONFIG`` (the one that writes the run directory)."""
    config = _tf_config()
    task = config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    return kind in (None, "chief") or (kind == "worker" and index == 0 and "chief" not in config.get("cluster", {}))


def worker_index(strategy) -> int:
    """This worker's task index (0 without a cluster)."""
    return int(getattr(strategy.cluster_resolver, "task_id", None) or 0)


def num_workers() -> int:
    """Workers in ``TF_CONFIG``'s cluster (1 without one)."""
    return len(_tf_config().get("cluster", {}).get("worker", [])) or 1


def check_same_epoch(strategy, epoch: int, run_dir) -> None:
    """Raises on every worker if the workers restored different epochs (e.g. a run directory not shared)."""
    values = strategy.run(lambda: tf.constant(float(epoch)))
    mean = float(strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None))
    if mean != float(epoch):
        from identity_tf.run_dir import RunDirError

        raise RunDirError(
            f"The workers resumed from different epochs (this one from {epoch}, the mean is {mean:g}). Multi-worker "
            f"runs resume from the chief's backup in {run_dir}/backup, which every worker must be able to read. "
            f"Received: run directory {run_dir}"
        )


def _replica_step(model, training: bool):
    def step(x, y):
        if tf.nest.flatten(x)[0].shape[0] == 0:
            # this worker's share of the last, partial global batch is empty: join the optimizer's all-reduce
            if training:
                variables = model.trainable_variables
                model.optimizer.apply([tf.zeros(v.shape, v.dtype) for v in variables], variables)
        elif training:
            model.train_step((x, y))
        else:
            model.test_step((x, y))

    return step


def _runner(model, strategy, training: bool):
    step = _replica_step(model, training)

    @tf.function  # one trace per batch shape (no reduce_retracing): an empty share is empty statically
    def run(x, y):
        strategy.run(step, args=(x, y))

    return run


def _distribute(strategy, dataset):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _epoch(model, strategy, dataset, training: bool, run=None) -> dict[str, float]:
    run = run or _runner(model, strategy, training)
    model.reset_metrics()
    for x, y in _distribute(strategy, dataset):
        run(x, y)
    return {key: float(value) for key, value in model.get_metrics_result().items()}


def evaluate(model, strategy, dataset) -> dict[str, float]:
    """The model's compiled loss and metrics over ``dataset`` (all workers' examples)."""
    return _epoch(model, strategy, dataset, training=False)


def fit(model, strategy, splits: dict, callbacks: list, initial_epoch: int, epochs: int, verbose=False) -> list:
    """Trains epochs ``initial_epoch .. epochs - 1`` on ``splits["train"]``, validating on ``splits["val"]``.

    Calls ``callbacks`` as ``model.fit`` would (train begin, epoch begin / end with the logs; ``model.stop_training``
    ends the loop). Returns the training losses of the epochs run.
    """
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
    train_run, test_run = _runner(model, strategy, True), _runner(model, strategy, False)
    losses = []
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        logs = _epoch(model, strategy, splits["train"], True, train_run)
        logs.update(
            {f"val_{key}": value for key, value in _epoch(model, strategy, splits["val"], False, test_run).items()}
        )
        callback_list.on_epoch_end(epoch, logs)
        losses.append(logs.get("loss", 0.0))
        if verbose:
            print(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items()), flush=True)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return losses
