"""The trainer's distributed paths on Globe TSP, the DVAE and L2X.

What the registry's contract test (``test_registry_contract.py``, every task under every engine) does not check:

* ``--strategy multi_worker`` (two local worker processes) on the DVAE: the reported loss includes its ``add_loss``
  KL term in every history row, the model's own ``nelbo`` / ``kl`` / ``bce`` metrics are reported, its callback and
  evaluation ran, and the test metrics equal a single-device evaluation of the saved best weights. The test set has
  41 examples at batch 20, so the last global batch (1 example) leaves one worker an empty batch.
* ``--strategy mirrored`` (two logical CPU devices, set up by the root conftest) on the DVAE with its
  gradient-alignment callback, and one mirrored L2X train step against the single-device step with the same global
  batch.
"""

import csv
import json
import math
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from identity_tf import train
from identity_tf.tasks import l2x

ROOT = pathlib.Path(__file__).resolve().parents[2]
DVAE = ROOT / "configs" / "dvae" / "identity_std.yaml"
L2X = ROOT / "configs" / "l2x" / "identity_std_k10.yaml"
GLOBE = ROOT / "configs" / "globe_tsp" / "tsp5_identity_noise0.2.yaml"


def read_history(run_dir):
    with open(pathlib.Path(run_dir) / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def run_two_workers(workers, config_path, run, data_dir, overrides):
    """``identity-tf train CONFIG --strategy multi_worker`` in two local worker processes; the chief's metrics."""
    workers.wait(workers.start(config_path, run, data_dir, overrides))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["strategy"] == "multi_worker" and metrics["replicas"] == 2 and metrics["workers"] == 2
    assert (run / "worker_1" / "metrics.json").exists() and (run / "best.weights.h5").exists()
    return metrics


def check_best_epoch(metrics, history, monitor):
    values = [row[monitor] for row in history]
    assert metrics["best_epoch"] == int(np.argmin(values))


# ------------------------------------------------------------------------------------------------ multi-worker
def test_multi_worker_dvae_reports_nelbo_with_kl(tmp_path, data_dir, workers, single_device_evaluation):
    from identity_tf.datasets import mnist

    mnist.load(data_dir=data_dir)  # built once here, not by both workers at the same time
    overrides = {
        "data.data_dir": data_dir,
        "data.max_train": 101,  # the last training batch (1 example) leaves worker 1 an empty batch
        "data.max_val": 40,
        "data.max_test": 41,
        "train.epochs": 2,
        "train.batch_size": 20,
        "method.noise_at_inference": False,  # deterministic evaluation, so the single-device reference is exact
    }
    run = tmp_path / "run"
    metrics = run_two_workers(workers, DVAE, run, data_dir, overrides)
    test = metrics["test"]
    assert {"loss", "nelbo", "kl", "bce"} <= set(test), test
    assert all(math.isfinite(v) for v in test.values()), test
    assert test["kl"] > 0 and 50 < test["nelbo"] < 600
    # the loss is the N-ELBO: the compiled BCE plus the model's add_loss KL term
    assert test["nelbo"] == pytest.approx(test["bce"] + test["kl"], rel=1e-6)
    assert test["loss"] == pytest.approx(test["nelbo"], rel=1e-6)
    history = read_history(run)
    assert len(history) == 2
    for row in history:
        for prefix in ("", "val_"):
            assert all(math.isfinite(row[prefix + k]) for k in ("loss", "nelbo", "kl", "bce")), row
            assert row[prefix + "kl"] > 0
            assert row[prefix + "nelbo"] == pytest.approx(row[prefix + "bce"] + row[prefix + "kl"], rel=1e-5)
            assert row[prefix + "loss"] == pytest.approx(row[prefix + "nelbo"], rel=1e-5)
        assert 0 < row["grad_cosine"] <= 1 + 1e-6 and row["grad_norm_ratio"] > 0  # the task's callback ran
    assert 0 < test["grad_cosine"] <= 1 + 1e-6  # the task's evaluate ran
    check_best_epoch(metrics, history, "val_nelbo")
    # the same numbers as Keras on one device with the tested (best-validation) weights
    reference = single_device_evaluation(train.load_config(DVAE, overrides), run / "best.weights.h5")
    for key in ("loss", "nelbo", "kl", "bce"):
        assert test[key] == pytest.approx(reference[key], rel=1e-5), (key, test, reference)


# ---------------------------------------------------------------------------------------------------- mirrored


def test_mirrored_dvae_run_with_its_callback(tmp_path, data_dir):
    from identity_tf.datasets import mnist

    mnist.load(data_dir=data_dir)
    overrides = {"data.data_dir": data_dir, "data.max_train": 200, "data.max_val": 100, "data.max_test": 100}
    config = train.load_config(DVAE, {**overrides, "train.epochs": 2})
    metrics = train.train(config, tmp_path / "run", strategy="mirrored", verbose=0, plots=False)
    assert metrics["replicas"] == 2
    test = metrics["test"]
    assert test["nelbo"] == pytest.approx(test["bce"] + test["kl"], rel=1e-5) and 0 < test["grad_cosine"] <= 1 + 1e-6
    history = read_history(tmp_path / "run")
    assert len(history) == 2 and all(0 < row["grad_cosine"] <= 1 + 1e-6 for row in history)  # GradientAlignment


def test_mirrored_l2x_step_equals_single_device():
    """One SGD step on 2 replicas (4 + 4 examples) equals the single-device step on the 8 examples.

    Only with the randomness switched off: each replica draws the Sum-of-Gamma noise and the dropout mask from the
    same seed state for its own half-batch, so with the shipped settings (tau 10, dropout 0.2) the two steps differ
    by design. tau = 1e-9 makes the noise vanish below float32 resolution and dropout = 0 removes the mask.
    """
    strategy = train.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=[500, 200]).astype(np.float32)
    x = rng.integers(2, 500, size=[8, 350]).astype(np.int32)
    y = rng.uniform(size=[8, 1]).astype(np.float32)
    settings = {"k": 5, "method": "identity", "projection": "std", "tau": 1e-9, "dropout": 0.0, "hidden": 16}
    settings["predictor_hidden"] = 16

    def compiled():
        model = l2x.L2X(settings, embeddings=embeddings, seed=0)
        model(x[:1])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=l2x.mse, jit_compile=False)
        return model

    single = compiled()
    with strategy.scope():
        replicated = compiled()
    replicated.set_weights(single.get_weights())
    before = [w.numpy().copy() for w in single.trainable_weights]
    for model in (single, replicated):
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=1, verbose=0)
    for a, b in zip(single.trainable_weights, replicated.trainable_weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.path)
    moved = {w.path: np.abs(w.numpy() - b).max() for w, b in zip(single.trainable_weights, before)}
    # the step reached the selector (through the Identity backward pass of the top-k) and the predictor
    assert moved[single.first_conv.kernel.path] > 1e-6 and moved[single.predictor_out.kernel.path] > 1e-6, moved
