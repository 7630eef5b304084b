"""L2X on BeerAdvocate: output shapes, exactly k selected tokens at test time, finite non-zero gradients to the
selector for every method, config errors, rationale precision and one tiny end-to-end `train.train` run."""

import json
import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from identity_tf import train
from identity_tf.datasets import beer, cache
from identity_tf.tasks import l2x
from identity_tf.tasks.l2x import task as l2x_spec

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "l2x"
METHODS = [("identity", "std"), ("identity", "none"), ("imle", "none"), ("l2x", "none"), ("softsub", "none")]
RNG = np.random.default_rng(0)
EMBEDDINGS = RNG.normal(size=[40, 200]).astype(np.float32)
X = RNG.integers(0, 40, size=[3, 350]).astype(np.int32)
Y = RNG.uniform(size=[3, 1]).astype(np.float32)


def make(method, projection, k=5, **extra):
    return l2x.L2X({"k": k, "method": method, "projection": projection, **extra}, embeddings=EMBEDDINGS, seed=1)


@pytest.mark.parametrize("method,projection", METHODS)
def test_shapes_exact_k_and_gradients(method, projection):
    # I-MLE's gradient is zero unless lam * upstream changes the perturbed top-k: a large lam makes it move here
    model = make(method, projection, lam=1e4 if method == "imle" else 10.0)
    assert model(X).shape == (3, 1)
    np.testing.assert_allclose(model.embedding.embeddings.numpy(), EMBEDDINGS)
    assert not model.embedding.trainable
    assert model.logits(X).shape == (3, 350)
    mask = model.select(X, training=False).numpy()
    assert mask.shape == (3, 350) and set(np.unique(mask)) <= {0.0, 1.0}
    assert mask.sum(axis=-1).tolist() == [5.0, 5.0, 5.0]
    # the test-time selection is the hard top-k of the logits
    top = np.argsort(-model.logits(X, training=False).numpy(), axis=-1)[:, :5]
    assert all(set(np.flatnonzero(m)) == set(t) for m, t in zip(mask, top))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(l2x.mse(Y, model(X, training=True)))
    selector = model.first_conv.trainable_weights + model.token_logits.trainable_weights[:1]
    grads = tape.gradient(loss, selector + model.predictor_out.trainable_weights)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert all(float(tf.norm(g)) > 0 for g in grads), [float(tf.norm(g)) for g in grads]


def test_relaxations_sum_to_k_when_training():
    logits = tf.constant(RNG.normal(size=[2, 30]), tf.float32)
    soft = l2x.RelaxedSubset(4, "softsub", 0.5, seed=0)(logits, training=True).numpy()
    np.testing.assert_allclose(soft.sum(-1), 4.0, rtol=1e-4)
    concrete = l2x.RelaxedSubset(4, "l2x", 0.5, seed=0)(logits, training=True).numpy()
    assert np.all((concrete >= 0) & (concrete <= 1)) and np.all(concrete.sum(-1) <= 4 + 1e-5)


@pytest.mark.parametrize(
    "config,match",
    [
        ({"method": "gumbel"}, "method"),
        ({"method": "l2x", "projection": "std"}, "projection"),
        ({"k": 0}, "k"),
        ({"k": 351}, "k"),
        ({"temperature": 0.0}, "temperature"),
        ({"lam": -1.0}, "lam"),
        ({"dropout": 1.0}, "dropout"),
        ({"noise_variant": "x"}, "noise_variant"),
    ],
)
def test_config_errors(config, match):
    """Release 0.1's model dicts (method keys under ``model``) are read through the new schema's checks."""
    with pytest.raises(ValueError, match=match):
        l2x.L2X(config)


def test_data_config_errors():
    for bad in ({"aspect": 5}, {"max_train": 0}, {"num_heldout": 1}):
        with pytest.raises(ValueError):
            l2x_spec.L2XData(**bad)
    with pytest.raises(ValueError, match="embeddings"):
        l2x.L2X({}, embeddings=np.zeros([5, 7], np.float32))


def test_rationale_precision():
    class Data:
        x_annotations = X
        rationale = np.zeros([3, 350], np.float32)

    model = make("identity", "std")
    assert l2x.rationale_precision(model, Data) == 0.0
    Data.rationale = model.select(X).numpy()  # the selection itself -> 1
    assert l2x.rationale_precision(model, Data, batch_size=2) == pytest.approx(1.0)
    Data.rationale[:, :] = 0
    Data.rationale[0] = model.select(X[:1]).numpy()[0]
    assert l2x.rationale_precision(model, Data) == pytest.approx(1 / 3)


def test_shipped_configs_validate(monkeypatch):
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem != "reproduce")
    expected = sorted(
        f"{m}_k{k}" for m in ("identity_std", "identity_none", "imle", "l2x", "softsub") for k in (5, 10, 15)
    )
    assert names == expected
    for path in CONFIGS.glob("*_k*.yaml"):
        config = train.load_config(path, quick=True)
        assert config.train.batch_size == 40 and config.train.learning_rate == 1e-3
        assert config.model.k == int(path.stem.rsplit("_k", 1)[1]) and config.data.aspect == 1
        assert train.load_config(path).train.epochs == 20
    with pytest.raises(train.ConfigError, match="Unknown key"):
        train.load_config({"task": "l2x", "model": {"kk": 3}})


def test_train_end_to_end(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    downloads = pathlib.Path(cache.data_dir()) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    os.symlink(downloads, data_dir / "downloads")  # reuse the verified wheel
    config = train.load_config(
        {
            "task": "l2x",
            "data": {"num_train": 120, "num_heldout": 40, "num_annotations": 12, "data_dir": str(data_dir)},
            "model": {"method": "identity", "projection": "std", "k": 5},
            "train": {"epochs": 2, "batch_size": 40, "learning_rate": 1e-3, "jit_compile": False},
        }
    )
    metrics = train.train(config, tmp_path / "run", verbose=0)
    run = tmp_path / "run"
    assert np.isfinite(metrics["test"]["mse"]) and metrics["test"]["mse"] == pytest.approx(metrics["test"]["loss"])
    precision = metrics["test"]["rationale_precision"]
    assert 0.0 <= precision <= 1.0
    assert json.loads((run / "metrics.json").read_text())["test"]["rationale_precision"] == precision
    assert (run / "best.weights.h5").exists() and (run / "selections.txt").read_text().startswith("review:")
    assert (data_dir / beer.FOLDER / "annotations.json").exists()
    loaded = keras.models.load_model(run / "model.keras")  # embeddings come back from the saved weights
    data = l2x_spec.load_data(config.data)
    np.testing.assert_allclose(loaded.embedding.embeddings.numpy(), data.embeddings)
    model = l2x.L2X(config.model, embeddings=data.embeddings, method=config.method)
    model(data.x_test[:2])
    model.load_weights(str(run / "best.weights.h5"))
    np.testing.assert_allclose(loaded(data.x_test[:4]).numpy(), model(data.x_test[:4]).numpy(), atol=1e-6)
