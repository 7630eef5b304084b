"""A toy task registered with the trainer for the run-directory and health tests: seconds per training, no dataset.

It is defined here, outside the package, from the registry alone (:func:`identity_tf.tasks.register`): a new task
needs no change to any shared file.

Inputs ``x [B, 8]``, labels the top-2 of ``x @ W`` for a fixed ``W``; the model is ``Dense(8) -> Dense(8) ->
SolverLayer(TopK(2))`` with the Identity gradient and the Hamming loss. ``model.constant`` makes the second Dense a
frozen zero kernel with a random bias, so every example gets the same solver input (a collapsed model).
"""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf
from identity_tf import train
from identity_tf.tasks import Task, TaskData, register, unregister

CRASH = {"at_epoch": None}  # set by a test: the toy run raises at the start of that epoch (0-based)


@dataclasses.dataclass
class ToyData:
    n: int = 8
    num_train: int = 64
    num_val: int = 16
    num_test: int = 16
    seed: int = 0


@dataclasses.dataclass
class ToyModel:
    n: int = 8
    constant: bool = False


class Crash(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if CRASH["at_epoch"] == epoch:
            raise RuntimeError(f"simulated crash at the start of epoch {epoch + 1}")


def toy_arrays(d: ToyData):
    rng = np.random.default_rng(d.seed)
    weights = rng.normal(size=(d.n, d.n)).astype(np.float32)
    splits = {}
    for name, size in (("train", d.num_train), ("val", d.num_val), ("test", d.num_test)):
        x = rng.normal(size=(size, d.n)).astype(np.float32)
        splits[name] = (x, itf.solvers.TopK(k=2)(x @ weights).numpy())
    return splits


def toy_datasets(config):
    arrays = toy_arrays(config.data)
    b = config.train.batch_size
    splits = {name: tf.data.Dataset.from_tensor_slices(arrays[name]).batch(b) for name in ("train", "val", "test")}
    return TaskData(splits, arrays)


def build_toy(config, data=None):
    n = config.model.n
    inputs = keras.Input((n,))
    hidden = keras.layers.Dense(n, name="first")(inputs)
    if config.model.constant:
        costs = keras.layers.Dense(
            n, kernel_initializer="zeros", bias_initializer=keras.initializers.RandomNormal(seed=1), trainable=False
        )(hidden)
    else:
        costs = keras.layers.Dense(n, name="costs")(hidden)
    solution = itf.layers.SolverLayer(itf.solvers.TopK(k=2), gradient="identity", name="solver")(costs)
    return keras.Model(inputs, solution)


def exact_match(y_true, y_pred):
    return tf.reduce_mean(tf.cast(tf.reduce_all(tf.equal(y_true, y_pred), axis=-1), tf.float32))


def toy_config(**overrides):
    """A toy run config (3 epochs, batch 16, Adam 0.01, no XLA) with dotted overrides."""
    values = {"train.epochs": 3, "train.batch_size": 16, "train.learning_rate": 0.01, "train.jit_compile": False}
    values.update(overrides)
    return train.load_config({"task": "toy"}, values)


class ToyTask(Task):
    data_config = ToyData
    model_config = ToyModel
    model_from_data = {"n": "n"}
    monitor, mode = "val_exact_match", "max"

    def datasets(self, config):
        return toy_datasets(config)

    def build_model(self, config, data):
        return build_toy(config, data)

    def compile(self, model, optimizer, jit_compile):  # a plain Keras model: the task names its loss and metrics
        model.compile(
            optimizer=optimizer, loss=itf.losses.HammingLoss(), metrics=[exact_match], jit_compile=jit_compile
        )

    def callbacks(self, model, config, data):
        return [Crash()]


class Toy:
    """What the `toy_task` fixture hands a test."""

    config = staticmethod(toy_config)
    arrays = staticmethod(toy_arrays)
    crash = CRASH

    def __init__(self, task):
        self.task = task


@pytest.fixture
def toy_task():
    """Registers the toy task as ``toy`` for one test."""
    register("toy")(ToyTask)
    CRASH["at_epoch"] = None
    yield Toy(ToyTask())
    CRASH["at_epoch"] = None
    unregister("toy")
