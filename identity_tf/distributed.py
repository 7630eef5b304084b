"""Multi-worker training: ``MultiWorkerMirroredStrategy`` with a custom loop around ``strategy.run``.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (DESIGN.md section 8), so this loop does what
``fit`` would: per-replica forward/backward of the mean loss over the examples of the global batch (the compiled
per-example loss plus the model's ``add_loss`` terms, e.g. the DVAE's KL; a partial last batch is averaged over its
own size), gradients all-reduced by the optimizer, metrics (the task's and the model's own, e.g. the DVAE's
``nelbo`` / ``kl`` / ``bce``) summed across workers, and the test metrics of the best-validation weights
(``spec.monitor``, as the single-process trainer's checkpoint). A worker whose share of the last partial batch is
empty takes part in every collective without a forward pass. Each worker process runs the same command with its own
``TF_CONFIG``; the chief (task 0) writes the run directory (atomically, as the single-process trainer), the others
write to a scratch directory. :class:`identity_tf.run_health.RunHealth` checks every epoch on every worker (they
hold the same weights, so they stop together). Multi-worker runs do not resume: an unfinished one starts over.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pathlib
import time

import keras
import tensorflow as tf


def _is_chief(resolver) -> bool:
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0)


def is_chief() -> bool:
    """Whether this process is the chief of the cluster in ``TF_CONFIG`` (the one that writes the run directory)."""
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    return kind in (None, "chief") or (kind == "worker" and index == 0 and "chief" not in _cluster())


def _cluster() -> dict:
    return json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})


def train_multi_worker(config, spec, run_dir: pathlib.Path, verbose=1, hint: str = "") -> dict:
    """Trains ``config`` with ``MultiWorkerMirroredStrategy``; returns the test metrics (on the chief)."""
    from identity_tf import run_dir as run_dir_lib
    from identity_tf.run_health import RunHealth
    from identity_tf.train import NoiseSchedule, _first_batches, build_and_compile

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = strategy.cluster_resolver
    chief = _is_chief(resolver)
    out = run_dir if chief else run_dir / f"worker_{resolver.task_id}"  # created before each write (the chief
    # may clear the run directory, --overwrite, before the workers first meet in a collective)
    keras.utils.set_random_seed(config.train.seed)
    splits, data = spec.datasets(config)
    batches = _first_batches(splits, config)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist = {name: strategy.experimental_distribute_dataset(ds.with_options(options)) for name, ds in splits.items()}
    model = build_and_compile(config, spec, strategy, sample=next(iter(splits["train"]))[0])
    metric_fns = {fn.__name__: fn for fn in spec.metrics}
    noise = NoiseSchedule(config.method.alpha, config.method.noise_epochs) if config.method.alpha > 0 else None
    if noise is not None:
        noise.set_model(model)

    health = RunHealth(batches["val"], batches["train"], patience=config.train.collapse_patience, hint=hint)
    task_callbacks = [health]  # first: its checks raise before anything of a diverged epoch is written
    task_callbacks += list(spec.callbacks(model, config, data)) if spec.callbacks is not None else []
    for callback in task_callbacks:  # e.g. the DVAE's gradient diagnostics: they add to each epoch's logs
        callback.set_model(model)
    own_metrics = _own_metrics(model)  # e.g. the DVAE's nelbo / kl / bce, updated by its compute_loss
    monitor = spec.monitor
    best_value, best_weights, best_epoch = None, None, None

    keys = ["loss", "count", *metric_fns, *(k for m in own_metrics for k in (m.name, m.name + _WEIGHT))]

    def replica_step(x, y, training):
        count = tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.float32)
        variables = model.trainable_variables
        if training:  # examples in the whole global batch (a partial last batch too)
            n_global = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, count)
        if tf.nest.flatten(x)[0].shape[0] == 0:
            # This worker's share of the last, partial global batch is empty (e.g. 41 examples at batch 20: the
            # last 1 goes to one worker). No forward pass: TF's oneDNN CPU kernels fail on empty batches (Conv1D ->
            # GlobalMaxPool in L2X: "Matrix size-incompatible: In[0]: [0,200]"), Keras' compiled loss leaves an
            # empty batch unreduced, and add_loss means of no examples are NaN. The replica still takes part in
            # every collective: a zero gradient for the optimizer's all-reduce and zeros for each reduced key.
            if training:
                model.optimizer.apply([tf.zeros(v.shape, v.dtype) for v in variables], variables)
            return {key: tf.zeros((), tf.float32) for key in keys}
        with tf.GradientTape() as tape:
            y_pred = model(x, training=training)
            per_example = spec.loss(y, y_pred)
            # add_loss terms (the DVAE's KL) are batch means over this replica's examples: weighted by the local
            # batch size they become per-example sums (0 for a batch that is empty only at run time)
            extra = tf.add_n([tf.cast(v, per_example.dtype) for v in model.losses]) if model.losses else 0.0
            total = tf.reduce_sum(per_example) + count * tf.where(count > 0, extra, tf.zeros_like(extra))
            if training:
                # the mean over the global batch's examples, as a single-device step on that batch: the
                # optimizer all-reduces (sums) the replicas' gradients of total / n_global
                loss = total / tf.maximum(n_global, 1.0)
        if training:
            grads = tape.gradient(loss, variables)
            # dense and never None, so that the all-reduce matches the one of an empty replica (above)
            grads = [
                tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)
            ]
            model.optimizer.apply(grads, variables)
        sums = {"loss": total, "count": count}
        sums.update({name: tf.reduce_sum(fn(y, y_pred)) for name, fn in metric_fns.items()})
        if own_metrics:  # the model's own metrics over this step's examples: reset, compute_loss, read
            for metric in own_metrics:
                metric.reset_state()
            model.compute_loss(x=x, y=y, y_pred=y_pred, training=training)
            for metric in own_metrics:
                value, weight = (tf.cast(v, tf.float32) for v in (metric.total, metric.count))
                sums[metric.name] = tf.where(weight > 0, value, tf.zeros_like(value))  # 0, not NaN, if empty
                sums[metric.name + _WEIGHT] = weight
        return {key: tf.cast(sums[key], tf.float32) for key in keys}  # the same keys, in the same order, everywhere

    @tf.function  # one trace per batch shape (no reduce_retracing): an empty share is empty statically
    def run_step(x, y, training):
        per_replica = strategy.run(replica_step, args=(x, y, training))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    def run_epoch(name, training):
        totals = {}
        for x, y in dist[name]:
            for key, value in run_step(x, y, training).items():
                totals[key] = totals.get(key, 0.0) + float(value)
        count = max(totals.pop("count", 0.0), 1.0)
        weights = {key[: -len(_WEIGHT)]: totals.pop(key) for key in list(totals) if key.endswith(_WEIGHT)}
        return {key: value / max(weights.get(key, count), 1e-30) for key, value in totals.items()}

    history = []
    start = time.perf_counter()
    for epoch in range(config.train.epochs):
        if noise is not None:
            noise.on_epoch_begin(epoch)
        lr = config.train.learning_rate * config.train.lr_factor ** sum(epoch >= m for m in config.train.lr_milestones)
        model.optimizer.learning_rate.assign(lr)
        logs = run_epoch("train", True)
        logs.update({f"val_{k}": v for k, v in run_epoch("val", False).items()})
        for callback in task_callbacks:
            callback.on_epoch_end(epoch, logs)
        history.append({"epoch": epoch, **logs})
        # best-validation weights, as the single-process trainer's ModelCheckpoint (every worker sees the same
        # all-reduced logs, so all keep the same weights)
        value = logs.get(monitor)
        if value is not None and math.isfinite(value) and (best_value is None or _better(value, best_value, spec.mode)):
            best_value, best_weights, best_epoch = value, model.get_weights(), epoch
            out.mkdir(parents=True, exist_ok=True)
            run_dir_lib.atomic_write(out / "best.weights.h5", lambda tmp: model.save_weights(str(tmp)))
        if verbose and chief:
            print(f"epoch {epoch + 1}/{config.train.epochs} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items()))
    train_seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    run_dir_lib.atomic_write(out / "final.weights.h5", lambda tmp: model.save_weights(str(tmp)))
    if best_weights is not None:
        model.set_weights(best_weights)
    test = run_epoch("test", False)
    if spec.evaluate is not None:  # the task's extra test metrics (e.g. L2X's rationale precision)
        test.update({k: float(v) for k, v in spec.evaluate(model, data).items()})
    metrics = {
        "status": "collapsed" if health.collapse else "ok",
        "test": test,
        "train_seconds": train_seconds,
        "epochs": config.train.epochs,
        "strategy": "multi_worker",
        "replicas": strategy.num_replicas_in_sync,
        "workers": len(json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", [])) or 1,
        "best_epoch": best_epoch,  # the tested weights' epoch (None: the last epoch's, no finite monitor value)
    }
    if health.collapse:
        metrics["collapse"] = health.collapse
    if health.episodes:
        metrics["collapse_episodes"] = health.episodes
    if history:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        run_dir_lib.atomic_write_text(out / "history.csv", buffer.getvalue())
    run_dir_lib.atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))  # last: "finished"
    return metrics


_WEIGHT = "/weight"  # suffix of the sums that weight a model metric's sums (a Mean's count)


def _own_metrics(model) -> list:
    """The weighted means the model tracks itself (e.g. the DVAE's ``nelbo``, ``kl``, ``bce``, updated in its
    ``compute_loss``): ``model.metrics`` without the compiled loss tracker and compiled metrics."""
    return [m for m in model.metrics if isinstance(m, keras.metrics.Mean) and m.name != "loss"]


def _better(value: float, best: float, mode: str) -> bool:
    return value > best if mode == "max" else value < best
