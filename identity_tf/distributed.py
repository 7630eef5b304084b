"""Multi-worker training: ``MultiWorkerMirroredStrategy`` with a custom loop around ``strategy.run``.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (DESIGN.md section 8), so this loop does what
``fit`` would: per-replica forward/backward, loss summed over examples and divided by the *global* batch size
(``tf.nn.compute_average_loss``), gradients all-reduced by the optimizer, metrics reduced across workers. Each worker
process runs the same command with its own ``TF_CONFIG``; the chief (task 0) writes the run directory, the others
write to a scratch directory.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import time

import keras
import tensorflow as tf


def _is_chief(resolver) -> bool:
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0)


def train_multi_worker(config, spec, run_dir: pathlib.Path, verbose=1) -> dict:
    """Trains ``config`` with ``MultiWorkerMirroredStrategy``; returns the test metrics (on the chief)."""
    from identity_tf.train import NoiseSchedule, build_and_compile

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = strategy.cluster_resolver
    chief = _is_chief(resolver)
    out = run_dir if chief else run_dir / f"worker_{resolver.task_id}"
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.train.seed)
    splits, _ = spec.datasets(config)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist = {name: strategy.experimental_distribute_dataset(ds.with_options(options)) for name, ds in splits.items()}
    model = build_and_compile(config, spec, strategy, sample=next(iter(splits["train"]))[0])
    global_batch = config.train.batch_size
    metric_fns = {fn.__name__: fn for fn in spec.metrics}
    noise = NoiseSchedule(config.method.alpha, config.method.noise_epochs) if config.method.alpha > 0 else None
    if noise is not None:
        noise.set_model(model)

    def replica_step(x, y, training):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=training)
            per_example = spec.loss(y, y_pred)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:  # add_loss terms / regularisers, averaged over replicas like the data loss
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        if training:
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply(grads, model.trainable_variables)
        sums = {"loss": tf.reduce_sum(per_example)}
        sums.update({name: tf.reduce_sum(fn(y, y_pred)) for name, fn in metric_fns.items()})
        sums["count"] = tf.cast(tf.shape(per_example)[0], tf.float32)
        return sums

    @tf.function
    def run_step(x, y, training):
        per_replica = strategy.run(replica_step, args=(x, y, training))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    def run_epoch(name, training):
        totals = {}
        for x, y in dist[name]:
            for key, value in run_step(x, y, training).items():
                totals[key] = totals.get(key, 0.0) + float(value)
        count = max(totals.pop("count", 0.0), 1.0)
        return {key: value / count for key, value in totals.items()}

    history = []
    start = time.perf_counter()
    for epoch in range(config.train.epochs):
        if noise is not None:
            noise.on_epoch_begin(epoch)
        lr = config.train.learning_rate * config.train.lr_factor ** sum(epoch >= m for m in config.train.lr_milestones)
        model.optimizer.learning_rate.assign(lr)
        logs = run_epoch("train", True)
        logs.update({f"val_{k}": v for k, v in run_epoch("val", False).items()})
        history.append({"epoch": epoch, **logs})
        if verbose and chief:
            print(f"epoch {epoch + 1}/{config.train.epochs} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items()))
    train_seconds = time.perf_counter() - start
    test = run_epoch("test", False)
    metrics = {
        "test": test,
        "train_seconds": train_seconds,
        "epochs": config.train.epochs,
        "strategy": "multi_worker",
        "replicas": strategy.num_replicas_in_sync,
        "workers": len(json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", [])) or 1,
    }
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    model.save_weights(str(out / "final.weights.h5"))
    return metrics
