"""Divergence and collapse checks outside the compiled step (identity_tf.run_health), forced one by one."""

import json

import keras
import numpy as np
import pytest
import yaml

import identity_tf as itf
from identity_tf import cli, reproduce, train
from identity_tf.run_health import RunHealth, TrainingDiverged


def linear_topk(n=4, kernel=None, bias=None):
    """``x -> x @ kernel + bias -> TopK(2)`` (Identity gradient, Hamming loss)."""
    inputs = keras.Input((n,))
    dense = keras.layers.Dense(n, name="costs")
    outputs = itf.layers.SolverLayer(itf.solvers.TopK(k=2), name="solver")(dense(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", loss=itf.losses.HammingLoss())
    if kernel is not None:
        dense.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])
    return model, dense


def batch(n=4, size=6, seed=0):
    x = np.random.default_rng(seed).normal(size=(size, n)).astype(np.float32)
    return x, itf.solvers.TopK(k=2)(x).numpy()


def health_of(model, val, train_batch=None, **kwargs):
    health = RunHealth(val, train_batch or val, **kwargs)
    health.set_model(model)
    return health


def test_nan_weights_raise_with_their_count_and_first_variable():
    model, dense = linear_topk(kernel=np.eye(4), bias=np.zeros(4))
    kernel = np.eye(4, dtype=np.float32)
    kernel[1, 2] = kernel[3, 3] = np.nan
    dense.set_weights([kernel, np.zeros(4, np.float32)])
    with pytest.raises(
        TrainingDiverged, match=r"epoch 3 \(2 of 20 weights are NaN or inf \(the first in .*costs/kernel\)\)\. Try"
    ):
        health_of(model, batch(), hint="Try a smaller lr.").on_epoch_end(2, {"loss": 1.0})


def test_non_finite_loss_raises():
    model, _ = linear_topk(kernel=np.eye(4), bias=np.zeros(4))
    with pytest.raises(TrainingDiverged, match=r"epoch 1 \(the validation loss is inf\)\. Try"):
        health_of(model, batch(), hint="Try.").on_epoch_end(0, {"loss": 1.0, "val_loss": float("inf")})


def test_non_finite_solver_input_with_finite_weights_raises():
    model, _ = linear_topk(kernel=np.full((4, 4), 1e30), bias=np.zeros(4))
    train_batch = (np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32))
    val = (np.full((3, 4), 1e10, np.float32), np.zeros((3, 4), np.float32))  # 4e40 overflows float32: inf costs
    with pytest.raises(TrainingDiverged, match=r"100 % of the inputs of solver layer 'solver' are NaN or inf"):
        health_of(model, val, train_batch).on_epoch_end(0, {"loss": 1.0})


def test_logged_numbers_equal_their_definitions():
    """Solver inputs x @ I = x: the std/spread columns are numpy's; grad_norm is the closed form of an MSE model."""
    x, y = batch(size=5)
    model, _ = linear_topk(kernel=np.eye(4), bias=np.zeros(4))
    logs = {"loss": 1.0}
    health_of(model, (x, y), (x, y)).on_epoch_end(0, logs)
    assert logs["solver_input_std"] == pytest.approx(np.mean(np.std(x, axis=1)), rel=1e-6)
    assert logs["solver_input_spread"] == pytest.approx(np.mean(np.std(x, axis=0)), rel=1e-6)
    assert logs["distinct_solutions"] == len({tuple(row) for row in y})

    inputs = keras.Input((4,))
    regression = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    regression.compile("sgd", loss="mse")
    w = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    b = np.array([0.1, -0.2, 0.3], np.float32)
    regression.set_weights([w, b])
    target = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)
    logs = {"loss": 1.0}
    health_of(regression, (x, target), (x, target)).on_epoch_end(0, logs)
    residual = x @ w + b - target  # loss = mean over the 5 x 3 entries of residual^2
    grad_w, grad_b = 2 * x.T @ residual / residual.size, 2 * residual.sum(axis=0) / residual.size
    assert logs["grad_norm"] == pytest.approx(np.sqrt(np.sum(grad_w**2) + np.sum(grad_b**2)), rel=1e-5)
    assert "solver_input_std" not in logs  # no solver layer, no solver columns


def test_collapse_needs_patience_epochs_and_recovery_is_an_episode():
    x, y = batch(size=6)
    model, dense = linear_topk(kernel=np.zeros((4, 4)), bias=[0.4, 0.3, 0.2, 0.1])  # same costs for every example
    health = health_of(model, (x, y), patience=2)
    health.on_epoch_end(0, logs := {"loss": 1.0})
    assert logs["solver_input_spread"] == 0.0 and logs["distinct_solutions"] == 1.0 and health.collapse is None
    health.on_epoch_end(1, {"loss": 1.0})
    assert health.collapse == {
        "epoch": 1,
        "last_epoch": 2,
        "check": "solver inputs identical for every validation example (the network ignores its input)",
    }
    dense.set_weights([np.eye(4, dtype=np.float32), np.zeros(4, np.float32)])  # recovered
    health.on_epoch_end(2, {"loss": 1.0})
    assert health.collapse is None and health.episodes[0]["last_epoch"] == 2
    dense.set_weights([np.zeros((4, 4), np.float32), np.full(4, 0.5, np.float32)])  # constant within examples
    health.on_epoch_end(3, {"loss": 1.0})
    health.on_epoch_end(4, {"loss": 1.0})
    assert health.collapse["check"] == "solver inputs constant within every example (the solver sees only ties)"
    assert health_of(model, (x, y), patience=0).collapse is None  # patience 0: never flagged


def test_same_solution_for_every_example_is_a_collapse_when_the_labels_differ():
    x, y = batch(size=6)
    # different costs per example, but always the same top-2 (entries 0 and 1 dominate)
    model, _ = linear_topk(kernel=np.eye(4) * 1e-3, bias=[5.0, 4.0, 0.0, 0.0])
    health = health_of(model, (x, y), patience=1)
    health.on_epoch_end(0, logs := {"loss": 1.0})
    assert logs["distinct_solutions"] == 1.0 and len({tuple(r) for r in y}) > 1
    assert health.collapse["check"] == "the same solution for every validation example"


def test_collapsed_run_is_flagged_in_metrics_and_cli(toy_task, tmp_path, capsys):
    config = toy_task.config(**{"model.constant": True, "train.collapse_patience": 2})
    metrics = train.train(config, tmp_path / "run", verbose=0, plots=False)
    assert metrics["status"] == "collapsed"
    assert metrics["collapse"]["epoch"] == 1 and metrics["collapse"]["last_epoch"] == 3
    assert "identical for every validation example" in metrics["collapse"]["check"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "collapsed"
    resolved = config.to_dict()
    resolved["model"].pop("n")
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(resolved))
    assert cli.main(["train", str(tmp_path / "toy.yaml"), "--out", str(tmp_path / "run")]) == cli.EXIT_COLLAPSED
    assert "COLLAPSED: from epoch 1 to the end" in capsys.readouterr().err
    healthy = train.train(toy_task.config(), tmp_path / "healthy", verbose=0, plots=False)
    assert healthy["status"] == "ok" and "collapse" not in healthy


def test_collapse_streak_survives_a_resume(toy_task, tmp_path):
    config = toy_task.config(**{"model.constant": True, "train.collapse_patience": 3})
    toy_task.crash["at_epoch"] = 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.train(config, tmp_path / "run", verbose=0, plots=False)
    toy_task.crash["at_epoch"] = None
    metrics = train.train(config, tmp_path / "run", verbose=0, plots=False)
    assert metrics["resumed_at_epoch"] == 2 and metrics["collapse"]["epoch"] == 1  # 2 epochs before + 1 after


def test_reproduce_marks_collapsed_runs(tmp_path, monkeypatch):
    def fake_train(config, run_dir, **kwargs):
        run_dir.mkdir(parents=True, exist_ok=True)
        status = "collapsed" if config.train.seed == 1 else "ok"
        (run_dir / "metrics.json").write_text(json.dumps({"status": status, "test": {"tour_accuracy": 0.5}}))
        (run_dir / "history.csv").write_text("epoch,val_tour_accuracy\n0,0.5\n")

    monkeypatch.setattr(reproduce.train, "train", fake_train)
    configs = tmp_path / "configs" / "globe_tsp"
    configs.mkdir(parents=True)
    (configs / "tiny.yaml").write_text("task: globe_tsp\n")
    grid = {
        "table": "t",
        "metric": "tour_accuracy",
        "scale": 100,
        "seeds": [0, 1],
        "rows": [{"name": "Id", "config": "tiny.yaml"}],
    }
    (configs / "reproduce.yaml").write_text(yaml.safe_dump(grid))
    table = reproduce.run("globe_tsp", tmp_path / "configs", tmp_path / "out")
    assert "| Id | 50.00 ± 0.00 (1 of 2 collapsed) |" in table
    assert "Collapsed (constant predictions or solver inputs, see metrics.json): Id (seed 1)" in table


def test_cost_collapse_by_hand():
    from identity_tf.cost_collapse import cost_collapse

    # running peak 2.0 at epoch 3 (1-based); 0.15 < 0.1 * 2.0 = 0.2 shrunk, 0.25 not; the final run is epochs 5-7
    stds = [1.0, 1.5, 2.0, 0.25, 0.15, 0.1, 0.19]
    assert cost_collapse(stds, patience=3) == {"epoch": 5, "peak_epoch": 3, "peak": 2.0, "final": 0.19, "ratio": 0.1}
    assert cost_collapse(stds, patience=4) is None  # only 3 shrunk epochs at the end
    assert cost_collapse(stds, patience=0) is None  # never
    assert cost_collapse(stds + [0.21], patience=1) is None  # recovered above 10 % of the peak
    # the peak is a running one: a small start that grows is no collapse
    assert cost_collapse([0.001, 0.01, 0.1, 1.0], patience=1) is None
    assert cost_collapse([1.0, 0.6, 0.35], patience=1, ratio=0.5)["epoch"] == 3


def test_shrinking_costs_are_a_cost_collapse_not_a_collapse():
    x, y = batch(size=6)
    model, dense = linear_topk(kernel=np.eye(4), bias=np.zeros(4))
    health = health_of(model, (x, y), patience=2)
    stds = []
    for epoch, factor in enumerate([1.0, 0.5, 0.05, 0.01]):  # the same top-2 every epoch, costs shrinking
        dense.set_weights([factor * np.eye(4, dtype=np.float32), np.zeros(4, np.float32)])
        health.on_epoch_end(epoch, logs := {"loss": 1.0})
        stds.append(logs["solver_input_std"])
    expected_std = float(np.asarray(x, np.float64).std(axis=1).mean())  # costs = x at factor 1
    np.testing.assert_allclose(stds, [expected_std * f for f in [1.0, 0.5, 0.05, 0.01]], rtol=1e-5)
    assert health.collapse is None and logs["distinct_solutions"] > 1  # solutions stay varied: status ok
    assert health.cost_collapse["epoch"] == 3 and health.cost_collapse["peak_epoch"] == 1
    resumed = health_of(model, (x, y), patience=2)
    resumed.set_run_state(json.loads(json.dumps(health.get_run_state())))  # as the backup stores it
    assert resumed.cost_collapse == health.cost_collapse


def test_cost_collapse_is_written_and_warned_about(tmp_path, monkeypatch, capsys):
    shrink = {"epoch": 15, "peak_epoch": 11, "peak": 0.0611, "final": 0.00322, "ratio": 0.1}
    assert cli._cost_collapse_line({"status": "ok"}) is None
    assert cli._cost_collapse_line({"status": "ok", "cost_collapse": shrink}) == (
        "identity-tf: WARNING: the costs collapsed: the solver inputs' std fell from 0.0611 (epoch 11) to 0.00322, "
        "below 10 % of its peak from epoch 15 to the end (paper section 3.6; metrics.json: cost_collapse). A margin "
        "kept on (method.alpha > 0 with method.noise_epochs covering the run) or the projection P_std "
        "(method.projection: std) counters it."
    )

    def fake_train(config, run_dir, **kwargs):
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics = {"status": "ok", "test": {"tour_accuracy": 0.5}}
        if config.train.seed == 1:
            metrics["cost_collapse"] = shrink
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        (run_dir / "history.csv").write_text("epoch,val_tour_accuracy\n0,0.5\n")

    monkeypatch.setattr(reproduce.train, "train", fake_train)
    configs = tmp_path / "configs" / "globe_tsp"
    configs.mkdir(parents=True)
    (configs / "tiny.yaml").write_text("task: globe_tsp\n")
    grid = {"table": "t", "metric": "tour_accuracy", "seeds": [0, 1], "rows": [{"name": "BB", "config": "tiny.yaml"}]}
    (configs / "reproduce.yaml").write_text(yaml.safe_dump(grid))
    table = reproduce.run("globe_tsp", tmp_path / "configs", tmp_path / "out")
    assert "Costs collapsed (solver inputs shrank, see metrics.json): BB (seed 1, from epoch 15)" in table
    assert "collapsed)" not in table.splitlines()[4]  # the row itself: status ok, no "(1 of 2 collapsed)"
