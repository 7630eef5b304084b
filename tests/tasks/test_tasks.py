"""Task models and their losses/metrics: exact values, shapes, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf
from identity_tf.tasks import GlobeTSP, GradientNoiseLayer, MethodConfig, WarcraftShortestPath
from identity_tf.tasks import globe_tsp as globe
from identity_tf.tasks import warcraft

RNG = np.random.default_rng(4)
RING5 = (np.roll(np.eye(5), 1, 1) + np.roll(np.eye(5), -1, 1)).astype(np.float32)  # tour 0-1-2-3-4-0


def test_tsp_metrics_exact_values():
    other = RING5[[0, 2, 1, 3, 4]][:, [0, 2, 1, 3, 4]]  # tour 0-2-1-3-4-0: shares edges 0-4, 2-1, 3-4
    y_true = np.stack([RING5, RING5])
    y_pred = np.stack([RING5, other])
    np.testing.assert_allclose(globe.edge_accuracy(y_true, y_pred).numpy(), [1.0, 3 / 5])
    np.testing.assert_allclose(globe.tour_accuracy(y_true, y_pred).numpy(), [1.0, 0.0])
    # 2 edges differ each way: 4 edges x 2 symmetric entries
    np.testing.assert_allclose(globe.hamming_loss(y_true, y_pred).numpy(), [0.0, 8.0])


def test_warcraft_metrics_exact_values():
    weights = np.array([[[1.0, 2.0], [3.0, 1.0]]], np.float32)
    true_path = np.array([[[1, 0], [0, 1]]], np.float32)  # cost 2
    detour = np.array([[[1, 1], [0, 1]]], np.float32)  # cost 4
    y_true = np.stack([true_path, weights], axis=-1)
    np.testing.assert_allclose(warcraft.cost_ratio(y_true, detour).numpy(), [200.0])
    np.testing.assert_allclose(warcraft.cost_ratio(y_true, true_path).numpy(), [100.0])
    np.testing.assert_allclose(warcraft.exact_path_accuracy(y_true, detour).numpy(), [0.0])
    np.testing.assert_allclose(warcraft.hamming_loss(y_true, detour).numpy(), [1.0])


@pytest.mark.parametrize("encoding", ["shared", "stacked"])
def test_globe_model_outputs_tours_and_round_trips(tmp_path, encoding):
    model = GlobeTSP({"k": 5, "flag_encoding": encoding}, MethodConfig(alpha=0.2, projection="std"), seed=3)
    flags = RNG.uniform(size=(3, 5, 20, 40, 3)).astype(np.float32)
    tours = model(flags).numpy()
    np.testing.assert_array_equal(tours.sum(-1), 2)
    np.testing.assert_array_equal(tours, np.swapaxes(tours, 1, 2))
    distances = model.distances(flags).numpy()
    np.testing.assert_array_equal(distances, np.swapaxes(distances, 1, 2))
    assert np.all(distances <= np.pi + 1e-6)  # great-circle arcs of the unit sphere
    noisy = model(flags, training=True).numpy()  # symmetric noise keeps the TSP input valid
    np.testing.assert_array_equal(noisy.sum(-1), 2)
    path = tmp_path / "globe.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored(flags).numpy(), tours)


def test_warcraft_model_shapes():
    model = WarcraftShortestPath({"size": 4}, MethodConfig(gradient="blackbox", alpha=0.2))
    maps = RNG.normal(size=(2, 32, 32, 3)).astype(np.float32)
    assert model.costs(maps).shape == (2, 4, 4)
    assert np.all(model.costs(maps, training=True).numpy() >= 0)  # noise before softplus
    paths = model(maps, training=True).numpy()
    assert paths.shape == (2, 4, 4) and paths[:, 0, 0].all() and paths[:, -1, -1].all()
    with pytest.raises(ValueError, match="multiple of the grid size"):
        warcraft.resnet18_stem(40, 3)


def test_gradient_noise_layer_adds_noise_to_the_gradient_only():
    layer = GradientNoiseLayer(sigma=0.5, seed=0)
    x = tf.constant(RNG.normal(size=(4, 6)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * 2.0)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    grad = tape.gradient(loss, x).numpy()
    noise = grad - 2.0
    assert abs(noise.std() - 0.5) < 0.25 and np.abs(noise).max() > 0
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=False) * 2.0)
    np.testing.assert_array_equal(tape.gradient(loss, x).numpy(), 2.0)


def test_gradient_noise_per_example_scale_is_sigma_over_the_batch():
    """With scale="per_example" the noise on dL/dy of the batch-mean loss is sigma / B: sigma on each dl_i/dy_i."""
    sigma, batch = 0.5, 8
    x = tf.constant(RNG.normal(size=(batch, 50)).astype(np.float32))
    grads = {}
    for scale in ("batch", "per_example"):
        layer = GradientNoiseLayer(sigma=sigma, seed=3, scale=scale)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.reduce_sum(layer(x, training=True), axis=1))  # Keras: sum_i l_i / B
        grads[scale] = tape.gradient(loss, x).numpy() - 1.0 / batch  # the noise alone
    # same seed, same draw: the two scales differ by exactly the factor 1 / B
    np.testing.assert_allclose(grads["per_example"], grads["batch"] / batch, rtol=1e-5, atol=1e-8)
    assert abs(grads["batch"].std() - sigma) < 0.05  # 400 draws of N(0, 0.25)
    assert (
        GradientNoiseLayer.from_config(GradientNoiseLayer(0.5, scale="per_example").get_config()).scale == "per_example"
    )
    with pytest.raises(ValueError, match="scale"):
        GradientNoiseLayer(0.5, scale="mean")
    with pytest.raises(ValueError, match="gradient_noise_scale"):
        MethodConfig(gradient_noise=0.5, gradient_noise_scale="x")


def test_symmetric_margin_noise():
    layer = itf.layers.NoiseMarginLayer(alpha=0.4, seed=1, symmetric=True)
    out = layer(np.zeros((3, 6, 6), np.float32), training=True).numpy()
    np.testing.assert_array_equal(out, np.swapaxes(out, 1, 2))
    np.testing.assert_array_equal(np.diagonal(out, axis1=1, axis2=2), 0)
    off = out[:, ~np.eye(6, dtype=bool)]
    np.testing.assert_allclose(np.abs(off), 0.2, rtol=1e-6)


def test_method_config_errors():
    with pytest.raises(ValueError, match="gradient"):
        MethodConfig(gradient="sgd")
    with pytest.raises(ValueError, match="projection"):
        MethodConfig(projection="l2")
    with pytest.raises(ValueError, match="alpha"):
        MethodConfig(alpha=-1.0)
    with pytest.raises(ValueError, match="flag_encoding"):
        globe.GlobeTSPConfig(flag_encoding="concat")
