"""Settings that only act through a run config reach the training: the learning-rate milestones, the margin-noise
schedule, label corruption and gradient noise, each driven from a config and checked by its effect."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf
from identity_tf import train
from identity_tf.tasks import registry


def history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def test_lr_milestones_from_the_config_set_each_epochs_learning_rate(toy_task, tmp_path):
    """lr 0.01, x0.5 after epochs 1 and 2 (0-based milestones count finished epochs): 0.01, 0.005, 0.0025, 0.0025."""
    config = toy_task.config(**{"train.epochs": 4, "train.lr_milestones": [1, 2], "train.lr_factor": 0.5})
    train.train(config, tmp_path / "run", verbose=0, plots=False)
    rates = [float(row["learning_rate"]) for row in history(tmp_path / "run")]
    np.testing.assert_allclose(rates, [0.01, 0.005, 0.0025, 0.0025], rtol=1e-6)


def test_gradient_noise_from_the_config_reaches_the_solver_input():
    """method.gradient_noise = 0.5 (per example) on Globe TSP: the gradient arriving at the solver's output moves by
    noise of std 0.5 / B per entry (B = 4), none at sigma 0; the forward pass is unchanged."""
    flags = tf.random.uniform([4, 5, 20, 40, 3], seed=1)
    task = registry.get("globe_tsp")
    grads, outputs, reference = {}, {}, None
    for sigma in (0.0, 0.5):
        config = train.load_config(
            {"task": "globe_tsp", "method": {"gradient": "identity", "projection": "none", "gradient_noise": sigma}}
        )
        model = task.build_model(config, None)
        model(flags)
        if reference is None:
            reference = model
        else:
            model.set_weights(reference.get_weights())
        solver_output = model.blocks[0](model.distances(flags), training=True)  # [identity solver]
        with tf.GradientTape() as tape:
            tape.watch(solver_output)
            y = solver_output
            for block in model.blocks[1:]:  # [gradient noise]
                y = block(y, training=True)
            loss = tf.reduce_mean(itf.losses.hamming(tf.zeros_like(y), y))
        grads[sigma], outputs[sigma] = tape.gradient(loss, solver_output).numpy(), y.numpy()
    assert [type(b).__name__ for b in model.blocks] == ["SolverLayer", "GradientNoiseLayer"]
    np.testing.assert_array_equal(outputs[0.0], outputs[0.5])
    np.testing.assert_allclose(grads[0.0], np.sign(outputs[0.0]) / 4)  # d mean_i sum|y_i| / dy = sign(y) / B
    noise = grads[0.5] - grads[0.0]
    assert noise.std() == pytest.approx(0.5 / 4, rel=0.2)  # 100 entries: the sample std's relative error is ~7 %
    assert abs(noise.mean()) < 3 * 0.125 / 10


def test_margin_noise_schedule_from_the_config():
    """method.alpha with noise_epochs: the schedule callback sets alpha for the first epochs, then 0."""
    layer = itf.layers.NoiseMarginLayer(0.3, seed=0)
    schedule = train.NoiseSchedule(alpha=0.3, noise_epochs=2)
    inputs = keras.Input((4,))
    schedule.set_model(keras.Model(inputs, layer(inputs)))
    seen = []
    for epoch in range(4):
        schedule.on_epoch_begin(epoch)
        seen.append(float(layer.alpha.numpy()) if hasattr(layer.alpha, "numpy") else float(layer.alpha))
    assert seen == pytest.approx([0.3, 0.3, 0.0, 0.0])
