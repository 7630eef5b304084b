"""Keras layers: serialisation, models of every kind, fit, mixed precision, MirroredStrategy."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf

RNG = np.random.default_rng(2)


def topk_model(gradient="identity", projection="std", alpha=0.2, jit=False):
    solver = itf.solvers.TopK(k=2)
    inputs = keras.Input((6,))
    costs = keras.layers.Dense(6)(inputs)
    costs = itf.layers.NoiseMarginLayer(alpha, seed=1)(costs)
    costs = itf.layers.ProjectionLayer(projection, solver=solver)(costs)
    outputs = itf.layers.SolverLayer(solver, gradient=gradient, seed=2)(costs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=itf.losses.HammingLoss(), jit_compile=jit)
    return model


def topk_data(n=64):
    x = RNG.normal(size=(n, 6)).astype(np.float32)
    y = itf.solvers.TopK(k=2)(x @ RNG.normal(size=(6, 6)).astype(np.float32)).numpy()
    return x, y


@pytest.mark.parametrize(
    "layer",
    [
        itf.layers.SolverLayer(itf.solvers.TopK(k=2), gradient=itf.gradients.Blackbox(lam=5.0)),
        itf.layers.SolverLayer(itf.solvers.LinearAssignment(), gradient="identity"),
        itf.layers.SolverLayer(itf.solvers.Ranking(), gradient=itf.gradients.IMLE(lam=3.0, num_samples=2), seed=4),
        itf.layers.ProjectionLayer("auto", solver=itf.solvers.TopK(k=2)),
        itf.layers.ProjectionLayer(None),
        itf.layers.NoiseMarginLayer(alpha=0.3, seed=5),
    ],
)
def test_layer_config_round_trip(layer):
    config = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()


def test_solver_layer_supports_jit_follows_solver():
    assert itf.layers.SolverLayer(itf.solvers.TopK(k=1)).supports_jit
    assert not itf.layers.SolverLayer(itf.solvers.LinearAssignment()).supports_jit


def test_noise_margin_only_when_training():
    layer = itf.layers.NoiseMarginLayer(alpha=0.2, seed=0)
    x = np.zeros((3, 4), np.float32)
    np.testing.assert_array_equal(layer(x).numpy(), x)
    np.testing.assert_allclose(np.abs(layer(x, training=True).numpy()), 0.1, rtol=1e-6)
    a, b = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert not np.array_equal(a, b)  # fresh noise each step
    layer.set_alpha(0.0)
    np.testing.assert_array_equal(layer(x, training=True).numpy(), x)


def test_imle_layer_is_noise_free_at_inference():
    layer = itf.layers.SolverLayer(itf.solvers.TopK(k=2), gradient="imle", seed=0)
    x = RNG.normal(size=(8, 6)).astype(np.float32)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), itf.solvers.TopK(k=2)(x).numpy())


def test_fit_learns_and_saves_to_keras_file(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = topk_data(256)
    model = topk_model()
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < before * 0.6, (before, after)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))


def test_fit_under_xla_with_pure_tf_solver():
    x, y = topk_data()
    history = topk_model(jit=True).fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_sequential_and_subclassed_models():
    x, y = topk_data()
    solver = itf.solvers.TopK(k=2)
    sequential = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(6), itf.layers.ProjectionLayer("std"), itf.layers.SolverLayer(solver)]
    )
    sequential.compile("adam", itf.losses.HammingLoss())
    sequential.fit(x, y, epochs=1, verbose=0)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(6)
            self.solver = itf.layers.SolverLayer(solver, gradient="blackbox")

        def call(self, inputs, training=None):
            return self.solver(itf.projections.std(self.dense(inputs)), training=training)

    subclassed = Subclassed()
    subclassed.compile("adam", itf.losses.HammingLoss())
    subclassed.fit(x, y, epochs=1, verbose=0)
    assert subclassed.predict(x[:4], verbose=0).shape == (4, 6)


def test_host_solver_in_functional_model_fit():
    x = RNG.normal(size=(32, 9)).astype(np.float32)
    y = itf.solvers.LinearAssignment()(x.reshape(-1, 3, 3)).numpy()
    inputs = keras.Input((9,))
    costs = keras.layers.Reshape((3, 3))(keras.layers.Dense(9)(inputs))
    outputs = itf.layers.SolverLayer(itf.solvers.LinearAssignment(), gradient="identity")(costs)
    model = keras.Model(inputs, outputs)
    model.compile("adam", itf.losses.HammingLoss())
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert model.output_shape == (None, 3, 3)
    assert np.all(np.isfinite(history.history["loss"]))


def test_mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = topk_data()
        model = topk_model()
        out = model.predict(x[:4], verbose=0)
        assert model.layers[-1].compute_dtype == "float16"
        np.testing.assert_array_equal(out.sum(-1), 2)
        history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def mirrored():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    # ReductionToOneDevice: CPU collectives clash across strategies made in one process (see train.make_strategy)
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def test_fit_under_mirrored_strategy_with_host_solver():
    strategy = mirrored()
    x = RNG.normal(size=(32, 9)).astype(np.float32)
    y = itf.solvers.LinearAssignment()(x.reshape(-1, 3, 3)).numpy()
    with strategy.scope():
        inputs = keras.Input((9,))
        costs = keras.layers.Reshape((3, 3))(keras.layers.Dense(9)(inputs))
        costs = itf.layers.NoiseMarginLayer(0.1, seed=0)(costs)
        costs = itf.layers.ProjectionLayer("std")(costs)
        outputs = itf.layers.SolverLayer(itf.solvers.LinearAssignment(), gradient="blackbox")(costs)
        model = keras.Model(inputs, outputs)
        model.compile("adam", itf.losses.HammingLoss())
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_replicas_draw_different_noise():
    strategy = mirrored()
    with strategy.scope():
        layer = itf.layers.NoiseMarginLayer(alpha=1.0, seed=0)

    @tf.function
    def step():
        return strategy.run(lambda: layer(tf.zeros((1, 64)), training=True))

    per_replica = strategy.experimental_local_results(step())
    assert not np.array_equal(per_replica[0].numpy(), per_replica[1].numpy())


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="gradient"):
        itf.layers.SolverLayer(itf.solvers.TopK(k=1), gradient="finite_differences")
    with pytest.raises(ValueError, match="alpha"):
        itf.layers.NoiseMarginLayer(alpha=-0.1)
    with pytest.raises(ValueError, match="projection"):
        itf.layers.ProjectionLayer("median")
    with pytest.raises(TypeError, match="solver"):
        itf.layers.SolverLayer({"class_name": "Dense", "config": {"units": 1}, "module": "keras.layers"})
