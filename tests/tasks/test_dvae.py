"""DVAE on MNIST: exact N-ELBO against numpy, k-hot latents, gradients of every method, the projections' Jacobians,
config errors, MirroredStrategy, serialisation and one tiny end-to-end `train.train` run on real MNIST."""

import json
import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from identity_tf import train
from identity_tf.method import MethodConfig
from identity_tf.tasks import dvae
from identity_tf.tasks.dvae import task as dvae_task_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "dvae"
RNG = np.random.default_rng(7)


def images(n, seed=0):
    """Grey-level images ``[n, 784]`` in [0, 1] with exact zeros and ones, like MNIST."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.uniform(-0.5, 1.5, size=(n, 784)), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------- numpy model
def numpy_nelbo(model, x):
    """Per-example (BCE, KL) of a noise-free DVAE, recomputed in float64 from the model's weights."""

    def mlp(seq, h):
        dense = seq.layers
        for i, layer in enumerate(dense):
            kernel, bias = (np.asarray(v, np.float64) for v in layer.get_weights())
            h = h @ kernel + bias
            if i < len(dense) - 1:
                h = np.maximum(h, 0.0)
        return h

    x = x.astype(np.float64)
    logits = mlp(model.encoder, x).reshape(-1, 20, 20)
    order = np.argsort(-logits, axis=-1, kind="stable")[..., :10]  # P_std keeps the order within each group
    y = np.zeros_like(logits)
    np.put_along_axis(y, order, 1.0, axis=-1)
    out = mlp(model.decoder, y.reshape(-1, 400))
    bce = np.sum(np.maximum(out, 0) - out * x + np.log1p(np.exp(-np.abs(out))), axis=-1)
    q = np.exp(logits - logits.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    kl = np.sum(q * (np.log(q + 1e-20) - np.log(1.0 / 20)), axis=(1, 2))
    return bce, kl


def compiled(config, seed=0):
    model = dvae.DiscreteVAE(config, seed=seed)
    model(images(1))  # build
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=dvae.negative_elbo, jit_compile=False)
    return model


# ---------------------------------------------------------------------------------------------------- tests
def test_nelbo_matches_numpy_exactly():
    x = images(7)
    model = compiled({"method": "identity", "projection": "std", "projection_scope": "group", "eval_noise": False})
    bce, kl = numpy_nelbo(model, x)
    assert kl.min() > 0 and bce.min() > 100
    np.testing.assert_allclose(dvae.negative_elbo(x, model(x)).numpy(), bce, rtol=1e-5)
    np.testing.assert_allclose(dvae.kl_to_uniform(model.encode(x)).numpy(), kl, rtol=1e-4)
    # evaluate: batches of 4 + 3, so the partial batch must be weighted by its size
    result = model.evaluate(x, x, batch_size=4, return_dict=True, verbose=0)
    np.testing.assert_allclose(result["nelbo"], np.mean(bce + kl), rtol=1e-5)
    np.testing.assert_allclose(result["loss"], np.mean(bce + kl), rtol=1e-5)
    np.testing.assert_allclose(result["kl"], np.mean(kl), rtol=1e-4)
    np.testing.assert_allclose(result["bce"], np.mean(bce), rtol=1e-5)


def test_nelbo_under_mirrored_strategy_equals_single_device():
    assert len(tf.config.list_logical_devices("CPU")) == 2  # set up by the root conftest
    x = images(10, seed=1)
    config = {"method": "identity", "projection": "std", "eval_noise": False}
    single = compiled(config)
    bce, kl = numpy_nelbo(single, x)
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    with strategy.scope():
        model = compiled(config)
    model.set_weights(single.get_weights())
    data = tf.data.Dataset.from_tensor_slices((x, x)).batch(4)  # global batches 4, 4, 2
    result = model.evaluate(data, return_dict=True, verbose=0)
    np.testing.assert_allclose(result["nelbo"], np.mean(bce + kl), rtol=1e-5)
    np.testing.assert_allclose(result["kl"], np.mean(kl), rtol=1e-4)
    # one SGD step under the strategy equals one on a single device (each loss term scaled per replica correctly);
    # tau = 1e-6 makes the Sum-of-Gamma noise too small to change the top-k, so the step is deterministic
    quiet = {"method": "identity", "projection": "std", "tau": 1e-6}
    single, replicated = compiled(quiet), None
    with strategy.scope():
        replicated = compiled(quiet)
    replicated.set_weights(single.get_weights())
    before = single.encoder.weights[0].numpy().copy()
    for m in (single, replicated):
        m.compile(optimizer=keras.optimizers.SGD(0.01), loss=dvae.negative_elbo, jit_compile=False)
        m.fit(tf.data.Dataset.from_tensor_slices((x[:4], x[:4])).batch(4), epochs=1, verbose=0)
    for a, b in zip(single.trainable_weights, replicated.trainable_weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6)
    assert np.abs(single.encoder.weights[0].numpy() - before).max() > 1e-5  # the step moved the encoder


@pytest.mark.parametrize("method", ["identity", "imle", "gumbel_st"])
@pytest.mark.parametrize("training", [True, False])
def test_latent_has_exactly_k_ones_per_group(method, training):
    model = dvae.DiscreteVAE({"method": method, "projection": "std" if method == "identity" else "none"}, seed=2)
    y = model.latent(images(6, seed=3), training=training).numpy()
    assert y.shape == (6, 20, 20)
    assert set(np.unique(y)) <= {0.0, 1.0}
    np.testing.assert_array_equal(y.sum(axis=-1), 10.0)


@pytest.mark.parametrize(
    "method,projection", [("identity", "std"), ("identity", "none"), ("imle", "none"), ("gumbel_st", "none")]
)
def test_gradient_reaches_the_encoder_through_the_sampler(method, projection):
    model = dvae.DiscreteVAE({"method": method, "projection": projection}, seed=4)
    x = images(16, seed=5)
    model(x)
    with tf.GradientTape() as tape:
        reconstruction = tf.reduce_mean(dvae.negative_elbo(x, model(x, training=True)))  # no KL: only the solver path
    grads = tape.gradient(reconstruction, model.encoder.trainable_variables)
    for g in grads:
        assert g is not None and np.all(np.isfinite(g.numpy()))
    assert np.linalg.norm(grads[0].numpy()) > 0  # first-layer kernel


def jacobian_transpose(projection, w, u):
    """``P'(w)^T u`` per example over all 400 entries, from the closed forms (Jacobians are symmetric)."""
    w, u = w.reshape(len(w), -1).astype(np.float64), u.reshape(len(u), -1).astype(np.float64)

    def mean_t(v):
        return v - v.mean(axis=1, keepdims=True)

    def norm_t(c, v):
        n = np.linalg.norm(c, axis=1, keepdims=True)
        z = c / n
        return (v - z * np.sum(z * v, axis=1, keepdims=True)) / n

    if projection == "none":
        return u
    if projection == "mean":
        return mean_t(u)
    if projection == "norm":
        return norm_t(w, u)
    return mean_t(norm_t(mean_t(w), u))


@pytest.mark.parametrize("scope", ["example", "group"])
@pytest.mark.parametrize("projection", ["none", "mean", "norm", "std"])
def test_identity_gradient_is_projection_jacobian_transpose(projection, scope):
    config = {"method": "identity", "projection": projection, "projection_scope": scope}
    model = dvae.DiscreteVAE(config, seed=6)
    theta = tf.Variable(RNG.normal(size=(3, 20, 20)).astype(np.float32))
    upstream = RNG.normal(size=(3, 20, 20)).astype(np.float32)
    with tf.GradientTape() as tape:
        w = model.perturb(theta, training=True)  # logits + SoG noise
        y = model.select(model.project(w), training=True)
        loss = tf.reduce_sum(y * upstream)
    assert not np.allclose(w.numpy(), theta.numpy())  # the noise is on
    np.testing.assert_array_equal(y.numpy().sum(-1), 10.0)
    # TopK is a "max" solver: Identity passes +dl/dy back; autodiff of the projection applies P'(w)^T, where one
    # projection acts on an example's 400 logits ("example") or on each group's 20 ("group")
    rows = 3 if scope == "example" else 60
    grad = tape.gradient(loss, theta).numpy().reshape(rows, -1)
    expected = jacobian_transpose(projection, w.numpy().reshape(rows, -1), upstream.reshape(rows, -1))
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
    if projection == "std":
        assert abs(np.dot(grad[0], np.ones(grad.shape[1]))) < 1e-5  # P_std's update is orthogonal to 1 ...
        centred = w.numpy().reshape(rows, -1)[0] - w.numpy().reshape(rows, -1)[0].mean()
        assert abs(np.dot(grad[0], centred)) < 1e-4  # ... and to the (centred) costs


def test_noise_at_evaluation_follows_eval_noise():
    x = images(4, seed=8)
    noisy = dvae.DiscreteVAE({"method": "identity"}, seed=9)
    clean = dvae.DiscreteVAE({"method": "identity", "eval_noise": False}, seed=9)
    clean(x)
    noisy(x)
    noisy.set_weights(clean.get_weights())
    np.testing.assert_array_equal(clean.latent(x).numpy(), clean.latent(x).numpy())
    assert not np.array_equal(noisy.latent(x).numpy(), clean.latent(x).numpy())
    imle_clean = dvae.DiscreteVAE({"method": "imle", "projection": "none", "eval_noise": False}, seed=9)
    imle_clean(x)
    imle_clean.set_weights(clean.get_weights())
    np.testing.assert_array_equal(imle_clean.latent(x).numpy(), clean.latent(x).numpy())  # both = top-k(logits)


@pytest.mark.parametrize(
    "values,match",
    [
        ({"method": "blackbox"}, "method.gradient must be one of"),
        ({"projection": "spread"}, "method.projection"),
        ({"noise_variant": "rate"}, "method.noise_variant"),
        ({"k": 0}, "model.k"),
        ({"k": 21}, "model.k"),
        ({"k": 2.5}, "model.k"),
        ({"s": 0}, "method.noise_s"),
        ({"tau": 0.0}, "method.noise_tau"),
        ({"lam": -1.0}, "method.lam"),
        ({"temperature": 0}, "method.temperature"),
        ({"projection_scope": "batch"}, "model.projection_scope"),
    ],
)
def test_config_errors(values, match):
    """Release 0.1's model dicts (method keys under ``model``) are read through the new schema's checks."""
    with pytest.raises(ValueError, match=match):
        dvae.DiscreteVAE(values)


def test_data_config_errors_and_method_in_two_places():
    with pytest.raises(ValueError, match="data.val_size"):
        dvae_task_lib.DVAEData(val_size=60000)
    with pytest.raises(ValueError, match="data.max_train"):
        dvae_task_lib.DVAEData(max_train=0)
    old_and_new = {"task": "dvae", "model": {"method": "imle"}, "method": {"gradient": "imle", "noise": "gumbel"}}
    with pytest.raises(train.ConfigError, match="both `model`"):
        train.load_config(old_and_new)


def test_release_0_1_config_means_what_it_meant():
    """An old DVAE config (method keys in `model`, eval_noise default true) loads as the equivalent new one."""
    with pytest.warns(DeprecationWarning, match="write it as"):
        old = train.load_config({"task": "dvae", "model": {"method": "imle", "projection": "none", "lam": 5.0}})
    expected = MethodConfig(gradient="imle", projection="none", lam=5.0, noise="sum_of_gamma", noise_at_inference=True)
    assert old.method == expected and old.model == dvae.DVAEConfig()


def test_model_round_trips_through_keras_file(tmp_path):
    x = images(3, seed=10)
    model = dvae.DiscreteVAE({"method": "gumbel_st", "projection": "none", "eval_noise": False}, seed=1)
    expected = model(x).numpy()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert loaded.task_config == model.task_config
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-6)


# --------------------------------------------------------------------------------------------- end to end
@pytest.fixture
def dvae_task(monkeypatch, tmp_path):
    from identity_tf.datasets import cache, mnist

    monkeypatch.setattr(mnist, "KERAS_CACHE", tmp_path / "no-keras" / "mnist.npz")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    downloads = pathlib.Path(cache.data_dir()) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    os.symlink(downloads, data_dir / "downloads")  # reuse the verified wheel
    return str(data_dir)


def test_shipped_configs_validate(dvae_task):
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem != "reproduce")
    assert names == [
        "gumbel_st",
        "identity_mean",
        "identity_none",
        "identity_none_sgd",
        "identity_norm",
        "identity_std",
        "identity_std_sgd",
        "imle",
    ]
    for path in CONFIGS.glob("*.yaml"):
        if path.stem == "reproduce":
            continue
        config = train.load_config(path)
        sgd = path.stem.endswith("_sgd")
        assert config.train.batch_size == 100 and config.train.epochs == 100
        assert (config.train.optimizer, config.train.learning_rate) == (("sgd", 1e-2) if sgd else ("adam", 1e-3))
        assert config.method.noise_at_inference  # the original protocol: noise on at evaluation
        if config.method.gradient == "identity":
            assert config.model.projection_scope == "group" and config.method.noise_variant == "dvae_notebook"
            assert config.method.noise == "sum_of_gamma"
        quick = train.load_config(path, quick=True)
        assert quick.data.max_train == 10000 and quick.train.epochs == 5
        assert "Gamma" in path.read_text() or "Gumbel" in path.read_text()
    assert train.load_config(CONFIGS / "imle.yaml").method.gradient == "imle"


def test_train_end_to_end(dvae_task, tmp_path):
    overrides = {
        "data.data_dir": dvae_task,
        "data.max_train": 500,
        "data.max_val": 200,
        "data.max_test": 200,
        "train.epochs": 1,
    }
    config = train.load_config(CONFIGS / "identity_std.yaml", overrides)
    run_dir = tmp_path / "run"
    metrics = train.train(config, run_dir, verbose=0)
    assert np.isfinite(metrics["test"]["nelbo"]) and 100 < metrics["test"]["nelbo"] < 600
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["nelbo"] == metrics["test"]["nelbo"]
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert {"nelbo", "val_nelbo", "kl", "val_kl", "bce", "grad_cosine", "grad_norm_ratio"} <= set(header)
    assert 0.0 < metrics["test"]["grad_cosine"] <= 1.0 + 1e-6 and metrics["test"]["grad_norm_ratio"] > 0
    for name in ("best.weights.h5", "model.keras", "reconstructions.png", "learning_curves.png"):
        assert (run_dir / name).is_file(), name
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["method"]["gradient"] == "identity"


# ------------------------------------------------------------------------------ paper Fig. 7 diagnostics
def numpy_alignment(model, x):
    """Per-example cosine and norm ratio of Fig. 7 for a noise-free, group-scope P_std DVAE, in float64."""
    w = model.encode(x).numpy().astype(np.float64).reshape(-1, 20, 20)
    y = model.select(model.project(w.astype(np.float32)), training=False)
    with tf.GradientTape() as tape:
        tape.watch(y)
        loss = tf.reduce_sum(dvae.negative_elbo(x, model.decode(y)))
    g_hat = tape.gradient(loss, y).numpy().astype(np.float64)  # Identity: dl/dw_hat = +dl/dy (TopK maximises)
    centred = w - w.mean(-1, keepdims=True)
    norm = np.linalg.norm(centred, axis=-1, keepdims=True)
    z = centred / norm
    pg = g_hat - g_hat.mean(-1, keepdims=True)
    g = (pg - z * np.sum(z * pg, -1, keepdims=True)) / norm  # P_std'(w)^T g_hat per group
    g, g_hat = g.reshape(len(x), -1), g_hat.reshape(len(x), -1)
    cosine = np.sum(g * g_hat, -1) / (np.linalg.norm(g, axis=-1) * np.linalg.norm(g_hat, axis=-1))
    return cosine.mean(), (np.linalg.norm(g, axis=-1) / np.linalg.norm(g_hat, axis=-1)).mean()


def test_gradient_alignment_matches_closed_form():
    config = {"method": "identity", "projection": "std", "projection_scope": "group", "eval_noise": False}
    model = dvae.DiscreteVAE(config, seed=3)
    x = images(5, seed=4)
    values = dvae.gradient_alignment(model, x, training=False)
    cosine, ratio = numpy_alignment(model, x)
    assert 0.0 < cosine < 1.0
    np.testing.assert_allclose(values["cosine"].numpy(), cosine, rtol=1e-4)
    np.testing.assert_allclose(values["norm_ratio"].numpy(), ratio, rtol=1e-4)


def test_gradient_alignment_without_projection_is_one_and_needs_identity():
    x = images(3, seed=5)
    values = dvae.mean_gradient_alignment(dvae.DiscreteVAE({"projection": "none"}, seed=1), x, batch_size=2)
    assert values == pytest.approx({"cosine": 1.0, "norm_ratio": 1.0}, rel=1e-5)
    with pytest.raises(ValueError, match="method 'identity'"):
        dvae.gradient_alignment(dvae.DiscreteVAE({"method": "imle"}), x)
    with pytest.raises(ValueError, match="at least one image"):
        dvae.GradientAlignment(np.zeros([0, 784], np.float32))


def test_gradient_alignment_callback_writes_logs():
    model = dvae.DiscreteVAE({"projection": "std"}, seed=2)
    callback = dvae.GradientAlignment((images(6, seed=6) * 255).astype(np.uint8).reshape(6, 28, 28), batch_size=4)
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert set(logs) == {"grad_cosine", "grad_norm_ratio"}
    assert 0.0 < logs["grad_cosine"] <= 1.0 + 1e-6 and logs["grad_norm_ratio"] > 0


def test_sgd_optimizer_config():
    config = train.load_config(CONFIGS / "identity_std_sgd.yaml")
    optimizer = config.train.make_optimizer()
    assert isinstance(optimizer, keras.optimizers.SGD) and float(optimizer.learning_rate) == pytest.approx(1e-2)
    with pytest.raises(train.ConfigError, match="optimizer"):
        train.load_config(CONFIGS / "identity_std.yaml", {"train.optimizer": "rmsprop"})
    with pytest.raises(train.ConfigError, match="momentum"):
        train.load_config(CONFIGS / "identity_std.yaml", {"train.momentum": 0.9})


def test_diverging_run_raises_a_clear_error(dvae_task, tmp_path, capsys):
    overrides = {"data.data_dir": dvae_task, "data.max_train": 300, "data.max_val": 100, "data.max_test": 100}
    overrides.update({"train.epochs": 3, "train.learning_rate": 1.0e3})  # far too large for SGD here
    config = train.load_config(CONFIGS / "identity_none_sgd.yaml", overrides)
    with pytest.raises(
        train.TrainingDiverged, match=r"diverged in epoch \d \(.*non-finite.*\).*smaller train.learning_rate.*1000"
    ):
        train.train(config, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "metrics.json").exists()
    from identity_tf import cli

    command = ["train", str(CONFIGS / "identity_none_sgd.yaml"), "--out", str(tmp_path / "cli"), "--quiet"]
    command += [f"--set={key}={value}" for key, value in overrides.items()]
    assert cli.main(command) == 1
    assert "Training diverged" in capsys.readouterr().err
