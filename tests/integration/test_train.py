"""Trainer, configs, CLI, resume, reproduce and MirroredStrategy on tiny data (multi-worker: test_distributed_tasks.py)."""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml

from identity_tf import cli, train
from identity_tf.tasks import registry
from identity_tf.tasks.globe_tsp import corrupt_labels

ROOT = pathlib.Path(__file__).resolve().parents[2]
GLOBE = ROOT / "configs" / "globe_tsp" / "tsp5_identity_noise0.2.yaml"
WARCRAFT = ROOT / "configs" / "warcraft" / "warcraft12_identity.yaml"


def tiny_globe(data_dir, **extra):
    overrides = {
        "data.data_dir": data_dir,
        "data.num_train": 200,
        "data.num_test": 40,
        "train.epochs": 2,
        "train.batch_size": 20,
        "method.noise_epochs": 1,
    }
    overrides.update(extra)
    return train.load_config(GLOBE, overrides)


def read_history(run_dir):
    with open(pathlib.Path(run_dir) / "history.csv") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------------ configs
def test_every_shipped_config_validates():
    paths = sorted((ROOT / "configs").glob("*/*.yaml"))
    assert len(paths) >= 20
    for path in paths:
        if path.name == "reproduce.yaml":
            from identity_tf import reproduce

            grid = reproduce.load_grid(path.parent.name, ROOT / "configs")  # keys and figure rows checked
            for row in grid["rows"]:
                train.load_config(path.parent / row["config"], row.get("set"))
        else:
            train.load_config(path)
            train.load_config(path, quick=True)


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(train.ConfigError, match=r"Unknown key\(s\) \['epoch'\].*Valid keys: \['epochs'"):
        train.load_config(GLOBE, {"train.epoch": 3})
    with pytest.raises(train.ConfigError, match="Unknown top-level key"):
        train.load_config({"task": "globe_tsp", "trian": {}})
    with pytest.raises(train.ConfigError, match="task"):
        train.load_config({"task": "sudoku"})
    with pytest.raises(train.ConfigError, match="gradient"):
        train.load_config(GLOBE, {"method.gradient": "finite_differences"})
    with pytest.raises(train.ConfigError, match="not found"):
        train.load_config("configs/nope.yaml")
    with pytest.raises(train.ConfigError, match="section.key=value"):
        train.load_config(GLOBE, {"epochs": 3})


def test_quick_block_and_overrides():
    config = train.load_config(GLOBE, {"train.epochs": 7}, quick=True)
    assert (config.data.max_train, config.train.epochs, config.method.noise_epochs) == (2000, 7, 10)
    assert config.model.k == config.data.k == 5
    assert train.parse_overrides(["train.learning_rate=1e-3", "data.k=10"]) == {
        "train.learning_rate": 1e-3,
        "data.k": 10,
    }


def test_corrupt_labels_flips_symmetric_entries_at_rate_rho_over_k():
    tours = np.zeros((4000, 5, 5), np.uint8)
    corrupted = corrupt_labels(tours, rho=1.0, seed=0)
    np.testing.assert_array_equal(corrupted, np.swapaxes(corrupted, 1, 2))
    assert np.all(np.diagonal(corrupted, axis1=1, axis2=2) == 0)
    upper = corrupted[:, np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]]
    assert abs(upper.mean() - 1.0 / 5) < 0.01
    np.testing.assert_array_equal(corrupt_labels(tours, 1.0, seed=0), corrupted)


# ------------------------------------------------------------------------------------------------ training
def test_noise_schedule_switches_margin_off(data_dir):
    import keras

    config = tiny_globe(data_dir)
    model = registry.get("globe_tsp").build_model(config, None)
    schedule = train.NoiseSchedule(alpha=0.2, noise_epochs=1)
    schedule.set_model(model)
    margins = train._margin_layers(model)
    assert len(margins) == 1 and margins[0].symmetric
    schedule.on_epoch_begin(0)
    assert margins[0].alpha == 0.2
    schedule.on_epoch_begin(1)
    assert margins[0].alpha == 0.0 and float(keras.ops.convert_to_numpy(margins[0]._alpha)) == 0.0


def test_warcraft_run(tmp_path, data_dir):
    config = train.load_config(
        WARCRAFT,
        {
            "data.data_dir": data_dir,
            "data.num_train": 20,
            "data.num_val": 6,
            "data.num_test": 6,
            "train.epochs": 1,
            "train.batch_size": 10,
            "method.gradient": "blackbox",
        },
    )
    metrics = train.train(config, tmp_path / "run", verbose=0)
    assert metrics["test"]["cost_ratio"] >= 100.0 - 1e-3
    assert (tmp_path / "run" / "paths.png").exists()


def test_huge_learning_rate_diverges_under_xla(tmp_path, data_dir, capsys):
    """lr 1e30 (the reported case): under XLA the NaN weights reach the solver as finite constant costs (a ReLU maps
    NaN to 0) and the loss stays finite; the epoch-end check outside the compiled step stops the run."""
    sizes = {"data.data_dir": data_dir, "data.num_train": 200, "data.num_test": 40, "train.batch_size": 20}
    sizes["train.jit_compile"] = True  # XLA, as "auto" chose for this model when the divergence was reported
    config = train.load_config(GLOBE, {**sizes, "train.learning_rate": 1e30})
    task = registry.get("globe_tsp")
    data = task.datasets(config)
    splits = data.splits
    model = train.build_and_compile(
        config, task, tf.distribute.get_strategy(), data, sample=next(iter(splits["train"]))[0]
    )
    assert model.jit_compile is True  # the run below is XLA-compiled
    run = tmp_path / "run"
    argv = ["train", str(GLOBE), "--out", str(run), "--quiet", "--set", "train.learning_rate=1e30"]
    argv += [item for key, value in sizes.items() for item in ("--set", f"{key}={value}")]
    assert cli.main(argv + ["--set", "train.epochs=3"]) == 1
    err = capsys.readouterr().err
    assert "Training diverged in epoch 1 (" in err and "weights are NaN or inf" in err, err
    assert "Try a smaller train.learning_rate (received 1e+30 with optimizer adam)" in err
    assert not (run / "metrics.json").exists() and not list(run.glob("backup/epoch-*.json"))  # nothing of it kept


def test_cli_errors_exit_2(capsys):
    assert cli.main(["train", str(GLOBE), "--set", "train.epoch=3"]) == 2
    assert "Valid keys" in capsys.readouterr().err
    assert cli.main(["train", "missing.yaml"]) == 2


def test_reproduce_tiny_grid(tmp_path, data_dir):
    from identity_tf import reproduce

    configs = tmp_path / "configs"
    (configs / "globe_tsp").mkdir(parents=True)
    config = yaml.safe_load(GLOBE.read_text())
    config["data"].update({"num_train": 100, "num_test": 20, "data_dir": data_dir})
    config["train"].update({"epochs": 1, "batch_size": 20})
    (configs / "globe_tsp" / "tiny.yaml").write_text(yaml.safe_dump(config))
    grid = {
        "table": "tiny",
        "metric": "edge_accuracy",
        "scale": 100,
        "seeds": [0, 1],
        "rows": [
            {"name": "Identity", "config": "tiny.yaml", "paper": "99.7"},
            {"name": "BB", "config": "tiny.yaml", "set": {"method.gradient": "blackbox"}, "paper": "-"},
        ],
    }
    (configs / "globe_tsp" / "reproduce.yaml").write_text(yaml.safe_dump(grid))
    table = reproduce.run("globe_tsp", configs, tmp_path / "out")
    assert "| Identity |" in table and "| 99.7 |" in table
    saved = json.loads((tmp_path / "out" / "table.json").read_text())
    assert [len(r["values"]) for r in saved["rows"]] == [2, 2]
    for row in saved["rows"]:
        assert row["mean"] == pytest.approx(np.mean(row["values"]))
    assert (tmp_path / "out" / "BB" / "seed1" / "metrics.json").exists()


# ---------------------------------------------------------------------------------------- resume after a kill
def _env(data_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", IDENTITY_TF_DATA_DIR=data_dir)
    env.pop("TF_CONFIG", None)
    return env


def test_killed_run_resumes_where_it_stopped(tmp_path, data_dir):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "identity_tf.cli",
        "train",
        str(GLOBE),
        "--out",
        str(run),
        "--quiet",
        "--set",
        "data.num_train=3000",
        "--set",
        "data.num_test=20",
        "--set",
        "train.epochs=4",
        "--set",
        "train.batch_size=10",
        "--set",
        "train.jit_compile=false",
    ]
    process = subprocess.Popen(command, env=_env(data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # wait for the first finished epoch, then kill in the middle of the next
            if (run / "history.csv").exists() and len(read_history(run)) >= 1:
                time.sleep(1.5)
                break
            assert process.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.2)
        else:
            pytest.fail("no epoch finished in time")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    finished = len(read_history(run))
    assert 1 <= finished < 4 and not (run / "metrics.json").exists()
    result = subprocess.run(command, env=_env(data_dir), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [int(row["epoch"]) for row in read_history(run)]
    assert epochs == list(range(4)), epochs  # resumed at the first unfinished epoch, nothing repeated
    assert (run / "metrics.json").exists()


def test_reproduce_columns_figures_and_seed_keys(tmp_path, monkeypatch):
    """Grid features without training: ``train.train`` is replaced by a fake that writes what a run writes."""
    from identity_tf import reproduce

    seen = []

    def fake_train(config, run_dir, **kwargs):
        seen.append((config.train.seed, config.data.split_seed, config.train.epochs))
        run_dir = pathlib.Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if config.method.gradient == "imle" and config.train.seed == 1:
            raise train.TrainingDiverged("Training diverged in epoch 1 (fake).")
        test = {"mse": 0.01 * (1 + config.train.seed)}
        if config.method.gradient == "identity":
            test["rationale_precision"] = 0.5 + 0.1 * config.train.seed
        (run_dir / "metrics.json").write_text(json.dumps({"test": test}))
        (run_dir / "history.csv").write_text("epoch,loss,val_loss\n0,2.0,3.0\n1,1.0,2.5\n")

    monkeypatch.setattr(reproduce.train, "train", fake_train)
    configs = tmp_path / "configs"
    (configs / "l2x").mkdir(parents=True)
    for name in ("identity_std_k10.yaml", "imle_k10.yaml"):
        (configs / "l2x" / name).write_text((ROOT / "configs" / "l2x" / name).read_text())
    grid = {
        "table": "tiny",
        "metric": "mse",
        "scale": 100,
        "seeds": [0, 1],
        "seed_keys": ["train.seed", "data.split_seed"],
        "columns": ["rationale_precision"],
        "rows": [
            {"name": "Identity", "config": "identity_std_k10.yaml", "paper": "2.47"},
            {"name": "I-MLE", "config": "imle_k10.yaml", "paper": "2.71"},
        ],
        "figures": [{"file": "fig.png", "title": "t", "column": ["loss", "val_loss"], "rows": ["Identity", "I-MLE"]}],
    }
    (configs / "l2x" / "reproduce.yaml").write_text(yaml.safe_dump(grid))
    table = reproduce.run("l2x", configs, tmp_path / "out", overrides={"train.epochs": 7, "train.seed": 5})
    assert seen == [(0, 0, 7), (1, 1, 7), (0, 0, 7), (1, 1, 7)]  # the seed keys follow the restart's seed
    assert "| Identity | 1.50 ± 0.50 | 0.550 ± 0.050 | 2.47 |" in table
    assert "| I-MLE | 1.00 ± 0.00 (1 of 2 diverged) | — | 2.71 |" in table
    assert "Diverged" in table and "I-MLE (seed 1)" in table
    assert (tmp_path / "out" / "I_MLE" / "seed1" / "diverged.txt").read_text().startswith("Training diverged")
    seen.clear()
    assert reproduce.run("l2x", configs, tmp_path / "out") == table  # finished and diverged runs are not rerun
    assert seen == []
    assert (tmp_path / "out" / "fig.png").stat().st_size > 0 and (tmp_path / "out" / "curves.png").exists()
    grid["figures"][0]["rows"] = ["Nope"]
    (configs / "l2x" / "reproduce.yaml").write_text(yaml.safe_dump(grid))
    with pytest.raises(train.ConfigError, match="unknown rows: \\['Nope'\\]"):
        reproduce.run("l2x", configs, tmp_path / "out")
    grid["figure"] = grid.pop("figures")
    (configs / "l2x" / "reproduce.yaml").write_text(yaml.safe_dump(grid))
    with pytest.raises(train.ConfigError, match="unknown key"):
        reproduce.run("l2x", configs, tmp_path / "out")
