"""The contract every registered task meets, checked for each task the registry finds (a new task gets it for free).

For every task: one of its configs with the task's ``tiny`` overrides loads, trains (two epochs on tiny data),
saves ``model.keras`` that reloads into a model predicting exactly what the task's own model with the tested
weights predicts, evaluates (finite test metrics, the task's extras included), writes its artifacts and its summary
line — under the default engine, ``MirroredStrategy`` on the two logical CPUs of the root conftest, and two local
``multi_worker`` processes (whose test metrics must equal a single-device evaluation of the tested weights). The
tested weights are the best validation epoch's. A multi-worker run killed after an epoch resumes from the chief's
backup.
"""

import csv
import json
import math
import pathlib
import signal
import time

import keras
import numpy as np
import pytest

from identity_tf import cli, train
from identity_tf.tasks import registry

ROOT = pathlib.Path(__file__).resolve().parents[2]
STANDARD = {"config.yaml", "history.csv", "metrics.json", "best.weights.h5", "model.keras", "learning_curves.png"}
TASKS = registry.names()


def task_config(name, data_dir, **extra):
    """The task's first shipped config with its tiny overrides (data in ``data_dir``)."""
    path = sorted(p for p in (ROOT / "configs" / name).glob("*.yaml") if p.stem != "reproduce")[0]
    overrides = {**registry.get(name).tiny, "data.data_dir": data_dir, **extra}
    return path, overrides, train.load_config(path, overrides)


def check_run(name, run, metrics, config):
    task = registry.get(name)
    assert metrics["status"] == "ok", metrics
    assert metrics["test"] and all(math.isfinite(v) for v in metrics["test"].values()), metrics["test"]
    assert json.loads((run / "metrics.json").read_text())["test"] == metrics["test"]
    files = {p.name for p in run.iterdir() if p.is_file()}
    assert STANDARD <= files, STANDARD - files
    assert files - STANDARD - {"run.lock"}, f"{name} wrote no artifact of its own"
    line = task.summary(metrics["test"])
    assert line and any(ch.isdigit() for ch in line), line
    assert train.load_config(run / "config.yaml").to_dict() == config.to_dict()  # the resolved config reloads
    # the tested weights are those of the best validation epoch
    with open(run / "history.csv") as f:
        values = [float(row[task.monitor]) for row in csv.DictReader(f)]
    best = int(np.argmax(values) if task.mode == "max" else np.argmin(values))
    assert metrics["best_epoch"] == best, (metrics["best_epoch"], values)


def check_reload(name, run, config):
    """model.keras predicts what the task's own model with best.weights.h5 predicts (same weights, same noise)."""
    task = registry.get(name)
    data = task.datasets(config)
    x = next(iter(data.splits["test"]))[0]
    loaded = keras.saving.load_model(run / "model.keras")
    model = task.build_model(config, data)
    for m in (loaded, model):  # built and called once each, so that stochastic layers are in the same state
        m(x)
        m.load_weights(run / "best.weights.h5")
    assert len(loaded.weights) == len(model.weights)
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), err_msg=a.path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x, training=False)), keras.ops.convert_to_numpy(model(x, training=False))
    )


@pytest.mark.parametrize("name", TASKS)
def test_default_engine(name, tmp_path, data_dir, capsys):
    path, overrides, config = task_config(name, data_dir)
    run = tmp_path / "run"
    argv = ["train", str(path), "--out", str(run), "--quiet"] + [f"--set={k}={v}" for k, v in overrides.items()]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert registry.get(name).summary(metrics["test"]) in out  # the CLI prints the task's summary line
    check_run(name, run, metrics, config)
    check_reload(name, run, config)


@pytest.mark.parametrize("name", TASKS)
def test_mirrored_strategy(name, tmp_path, data_dir):
    _, _, config = task_config(name, data_dir, **{"train.epochs": 1})  # one epoch: the engine is the default's
    metrics = train.train(config, tmp_path / "run", strategy="mirrored", verbose=0)
    assert metrics["replicas"] == 2
    check_run(name, tmp_path / "run", metrics, config)


def _prepare_data(name, config):
    registry.get(name).datasets(config)  # built once here, not by both workers at the same time


@pytest.mark.parametrize("name", TASKS)
def test_multi_worker(name, tmp_path, data_dir, workers, single_device_evaluation):
    """The tiny test sets leave one worker an empty share of the last global batch; the two workers' test metrics
    are still those of a single-device evaluation of the same weights (noise off at evaluation, so exact)."""
    path, overrides, config = task_config(name, data_dir, **{"method.noise_at_inference": False})
    _prepare_data(name, config)
    run = tmp_path / "run"
    workers.wait(workers.start(path, run, data_dir, overrides))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["strategy"] == "multi_worker" and metrics["workers"] == 2 and metrics["replicas"] == 2
    check_run(name, run, metrics, config)
    reference = single_device_evaluation(config, run / "best.weights.h5")
    for key, value in reference.items():
        assert metrics["test"][key] == pytest.approx(value, rel=1e-5), (key, metrics["test"], reference)


def test_multi_worker_run_resumes_after_a_kill(tmp_path, data_dir, workers):
    """Both workers are killed after the chief committed epoch 1 of 3; the same command finishes from there."""
    path, overrides, config = task_config("globe_tsp", data_dir, **{"train.epochs": 3})
    _prepare_data("globe_tsp", config)
    run = tmp_path / "run"
    processes = workers.start(path, run, data_dir, overrides)
    deadline = time.time() + 240
    while not (run / "backup" / "epoch-0001.json").exists():
        assert time.time() < deadline and all(p.poll() is None for p in processes), "no epoch 1 backup"
        time.sleep(0.2)
    for p in processes:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert not (run / "metrics.json").exists()
    workers.wait(workers.start(path, run, data_dir, overrides))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumed_at_epoch"] >= 1 and metrics["status"] == "ok"
    epochs = [int(line.split(",")[0]) for line in (run / "history.csv").read_text().splitlines()[1:]]
    assert epochs == [0, 1, 2]
