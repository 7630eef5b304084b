"""The execution policy of ``train.jit_compile`` (identity_tf/execution.py) and the XLA x MirroredStrategy fact.

The root conftest configures two logical CPU devices, so MirroredStrategy here has two replicas.
"""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf
from identity_tf import execution, train
from identity_tf.layers import SumOfGammaNoise
from identity_tf.tasks import registry

ROOT = pathlib.Path(__file__).resolve().parents[1]


def dense_model(solver=None, gradient="identity"):
    inputs = keras.Input((6,))
    costs = keras.layers.Dense(6)(inputs)
    return keras.Model(inputs, itf.layers.SolverLayer(solver or itf.solvers.TopK(k=2), gradient=gradient)(costs))


def conv_model():
    inputs = keras.Input((8, 8, 3))
    costs = keras.layers.Reshape((8 * 8 * 2,))(keras.layers.Conv2D(2, 3, padding="same")(inputs))
    return keras.Model(inputs, itf.layers.SolverLayer(itf.solvers.TopK(k=3))(costs))


def mirrored():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2  # set up by the root conftest
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def test_cpu_rule_per_model():
    assert execution.plan("auto", dense_model()) == execution.ExecutionPlan(
        True, "CPU: no convolutions and no Gamma noise, XLA"
    )
    conv = execution.plan("auto", conv_model())
    assert not conv.jit_compile and conv.reason.startswith("CPU: convolutions")
    imle = itf.gradients.IMLE(lam=1.0, noise=itf.noise.SumOfGamma(k=2))
    assert (
        execution.plan("auto", dense_model(gradient=imle)).reason
        == "CPU: SumOfGamma noise samples much slower under XLA"
    )
    inputs = keras.Input((6,))
    noisy = keras.Model(inputs, SumOfGammaNoise(k=2)(keras.layers.Dense(6)(inputs)))
    assert not execution.plan("auto", noisy).jit_compile
    # explicit values are honoured
    assert execution.plan(True, conv_model()).jit_compile and not execution.plan(False, dense_model()).jit_compile


def tsp_model(solver, k):
    inputs = keras.Input((k, k))
    return keras.Model(inputs, itf.layers.SolverLayer(solver)(inputs))


def test_host_solvers_are_never_compiled():
    model = tsp_model(itf.solvers.TSP(method="lkh"), 6)
    assert execution.plan("auto", model).reason.endswith("cannot be XLA-compiled (supports_jit=False)")
    with pytest.raises(ValueError, match="jit_compile=True, but layer .* runs on the host"):
        execution.plan(True, model)
    # auto TSP with a known number of cities above the DP's range
    assert not execution.jit_compile("auto", tsp_model(itf.solvers.TSP(num_cities=20), 20))


def test_bad_values():
    for value in ("maybe", 1, None, "true"):
        with pytest.raises(ValueError, match=f"Received: jit_compile={value!r}"):
            execution.plan(value, dense_model())


def test_mirrored_cpu_replicas_are_not_compiled():
    strategy = mirrored()
    with strategy.scope():
        model = dense_model()
    decision = execution.plan("auto", model, strategy)
    assert not decision.jit_compile and decision.reason.startswith("2 replicas on CPU devices")
    with pytest.raises(ValueError, match="jit_compile=True does not work with 2 replicas on CPU devices"):
        execution.plan(True, model, strategy)


def test_xla_with_mirrored_cpu_replicas_still_fails_and_the_policy_trains():
    """DESIGN.md section 8's early probe, reproduced: a Keras fit under MirroredStrategy over two CPU devices with
    jit_compile=True fails (XLA:CPU reads the second replica's variables from the first device). The policy's
    choice (no XLA) trains, with the same loss as the single-device run."""
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    y = (np.arange(32)[:, None] % 6 < 2).astype("float32")
    strategy = mirrored()

    def build(jit):
        keras.utils.set_random_seed(0)
        model = dense_model()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit)
        return model

    with strategy.scope():
        broken = build(True)
    with pytest.raises(Exception, match="located in device .*CPU:1 from device .*CPU:0"):
        broken.fit(x, y, batch_size=16, epochs=1, verbose=0)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = dense_model()
        jit = execution.resolve("auto", model, strategy)  # no XLA for the step; the TopK solver compiled alone
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit)
    assert model.jit_compile is False and "_solve" in vars(model.layers[-1].solver)
    mirrored_loss = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
    single_loss = build(False).fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(mirrored_loss, single_loss, rtol=1e-5)


@pytest.mark.parametrize(
    "config, expected",
    [
        ("configs/warcraft/warcraft12_identity.yaml", False),  # ResNet stem convolutions
        ("configs/globe_tsp/tsp5_identity_noise0.2.yaml", False),  # flag CNN
        ("configs/dvae/gumbel_st.yaml", True),  # dense layers only
        ("configs/dvae/identity_none.yaml", False),  # Sum-of-Gamma noise
    ],
)
def test_trainer_resolves_auto_with_the_policy(config, expected):
    config = train.load_config(ROOT / config, overrides={"train.jit_compile": "auto"})
    task = registry.get(config.task)
    model = train.build_and_compile(config, task, tf.distribute.get_strategy(), data=None)
    assert model.jit_compile is expected
    assert train.build_and_compile(config, task, mirrored(), data=None).jit_compile is False


def test_compile_solvers_keeps_results_checks_and_saving(tmp_path):
    rng = np.random.default_rng(1)
    points = rng.random((4, 6, 2)).astype("float32")
    x = np.linalg.norm(points[:, :, None] - points[:, None], axis=-1)  # [4, 6, 6] distances
    inputs = keras.Input((6, 6))
    hidden = keras.layers.Dense(6)(inputs)
    symmetric = keras.layers.Average()([hidden, keras.layers.Permute((2, 1))(hidden)])  # [B, 6, 6]
    tour = itf.layers.SolverLayer(itf.solvers.TSP(method="dp"), gradient="blackbox")
    model = keras.Model(inputs, tour(symmetric))
    expected = model.predict(x, verbose=0)
    decision = execution.plan("auto", conv_model())
    assert decision.compile_solvers and not decision.jit_compile
    assert execution.compile_solvers(model) == [tour.solver.name]
    assert execution.compile_solvers(model) == []  # once
    np.testing.assert_array_equal(model.predict(x, verbose=0), expected)
    model.compile(optimizer="sgd", loss="mae", jit_compile=False)
    model.fit(x, expected, epochs=1, verbose=0)  # BB's backward calls the compiled solver again
    with pytest.raises(tf.errors.InvalidArgumentError, match="symmetric"):  # value checks stay outside XLA
        tf.function(tour.solver)(tf.constant(x + np.triu(np.ones((6, 6), "float32"))))
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    assert "_solve" not in vars(restored.layers[-1].solver)


def test_compile_solvers_leaves_host_resolutions_alone():
    """TSP(method="auto") with 16 cities resolves to CP-SAT on the host: its solve is not put under XLA."""
    d = np.random.default_rng(2).random((2, 16, 16)).astype("float32")
    d = d + np.transpose(d, (0, 2, 1))
    inputs = keras.Input((16, 16))
    layer = itf.layers.SolverLayer(itf.solvers.TSP())
    model = keras.Model(inputs, layer(inputs))
    assert layer.supports_jit and execution.compile_solvers(model) == [layer.solver.name]
    model.compile(loss="mae", jit_compile=False)
    model.fit(d, model.predict(d, verbose=0), epochs=1, verbose=0)
