"""identity_tf.report: tables from committed result files, and README's generated blocks."""

import json
import pathlib

import pytest

from identity_tf import report

ROOT = pathlib.Path(__file__).resolve().parents[1]

GRID = {
    "table": "t",
    "metric": "acc",
    "scale": 100,
    "columns": ["edges"],
    "rows": [
        {"name": "A x=0.2", "config": "a.yaml", "paper": "99.67 ± 0.10"},
        {"name": "B", "config": "b.yaml"},
        {"name": "C never run", "config": "c.yaml", "paper": "1"},
    ],
}


def write_run(root, row, seed, acc=None, edges=None, seconds=None, status=None, diverged=False):
    run = root / report.slug(row) / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("task: x\n")
    if diverged:
        (run / "diverged.txt").write_text("Training diverged in epoch 3\n")
        return run
    metrics = {"test": {"acc": acc, "edges": edges}, "train_seconds": seconds}
    if status:
        metrics["status"] = status
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "history.csv").write_text("epoch,loss\n0,1.0\n")
    (run / "best.weights.h5").write_bytes(b"big")
    return run


def test_table_values_by_hand(tmp_path):
    write_run(tmp_path, "A x=0.2", 0, acc=0.90, edges=0.95, seconds=600)
    write_run(tmp_path, "A x=0.2", 1, acc=0.94, edges=0.97, seconds=720)
    write_run(tmp_path, "A x=0.2", 2, diverged=True)
    write_run(tmp_path, "B", 0, acc=0.5, edges=0.75, seconds=60, status="collapsed")
    write_run(tmp_path, "B", 3, acc=0.8, edges=0.9, seconds=90)
    rows = report.collect(GRID, tmp_path)
    assert [r["name"] for r in rows] == ["A x=0.2", "B"]  # C has no runs: not in the table
    assert rows[0]["seeds"] == [0, 1, 2] and rows[0]["failed"] == ["seed 2: diverged"]
    # A: mean of 90 and 94 = 92, population std = 2; edges 95, 97 -> 96 ± 1; minutes 10, 12 -> 11.0
    # B: the collapsed run stays in the mean: acc 50, 80 -> 65 ± 15; edges 75, 90 -> 82.5 ± 7.5; minutes 1, 1.5
    assert report.render(GRID, rows).splitlines() == [
        "| run | acc (ours) | edges (ours) | runs | train min/run | paper |",
        "|---|---|---|---|---|---|",
        "| A x=0.2 | 92.00 ± 2.00 | 96.00 ± 1.00 | 2 (+ seed 2: diverged) | 11.0 | 99.67 ± 0.10 |",
        "| B | 65.00 ± 15.00 | 82.50 ± 7.50 | 2 (+ seed 0: collapsed) | 1.2 | — |",
    ]


def test_column_scale_applies_to_the_columns_only(tmp_path):
    """Warcraft's grid: the cost ratio is stored x100 already (scale 1), the exact-path accuracy as a share."""
    write_run(tmp_path, "B", 0, acc=101.25, edges=0.875, seconds=120)
    grid = {**GRID, "scale": 1, "column_scale": 100}
    assert report.render(grid, report.collect(grid, tmp_path)).splitlines()[2] == "| B | 101.25 | 87.50 | 1 | 2.0 | — |"


def test_resumed_run_time_is_per_epoch_times_epochs_marked_estimated(tmp_path):
    """A run resumed at epoch 12 of 24 timed 12 epochs in 1 800 s: 150 s/epoch x 24 = 60 min, not 30."""
    run = write_run(tmp_path, "B", 0, acc=0.5, edges=0.5, seconds=1800)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(seconds_per_epoch=150.0, epochs=24, resumed_at_epoch=12)
    (run / "metrics.json").write_text(json.dumps(metrics))
    write_run(tmp_path, "A x=0.2", 0, acc=0.5, edges=0.5, seconds=600)  # not resumed: its own time, no mark
    lines = report.render(GRID, report.collect(GRID, tmp_path)).splitlines()
    assert lines[2] == "| A x=0.2 | 50.00 | 50.00 | 1 | 10.0 | 99.67 ± 0.10 |"
    assert lines[3] == "| B | 50.00 | 50.00 | 1 | 60.0 (est.) | — |"


def test_draw_figures_writes_curves_and_sweeps(tmp_path):
    results = tmp_path / "results"
    write_run(results, "A x=0.2", 0, acc=0.9, edges=0.9, seconds=1)
    write_run(results, "B", 0, acc=0.5, edges=0.5, seconds=1)
    grid = {
        **GRID,
        "figures": [{"file": "curves.png", "column": "loss", "rows": ["A x=0.2", "B"]}],
        "sweeps": [{"file": "sweep.png", "x_label": "x", "series": {"m": {0.2: "A x=0.2", 0: "B", 1: "C never run"}}}],
    }
    written = report.draw_figures(grid, results, tmp_path / "fig", prefix="t_")
    assert [p.name for p in written] == ["t_curves.png", "t_sweep.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_draw_figures_marks_tested_epochs_and_shades_the_first_runs_noise_epochs(tmp_path, monkeypatch):
    from identity_tf import plots

    results = tmp_path / "results"
    run_a = write_run(results, "A x=0.2", 0, acc=0.9, edges=0.9, seconds=1)
    write_run(results, "B", 0, acc=0.5, edges=0.5, seconds=1)
    (run_a / "config.yaml").write_text("task: x\nmethod: {noise_epochs: 12}\n")
    metrics = json.loads((run_a / "metrics.json").read_text())
    (run_a / "metrics.json").write_text(json.dumps({**metrics, "best_epoch": 7}))
    calls = []
    monkeypatch.setattr(plots, "compare_curves", lambda histories, column, path, **kwargs: calls.append(kwargs))
    shaded = {"file": "a.png", "column": "loss", "rows": ["A x=0.2", "B"], "shade_noise": True}
    report.draw_figures(
        {**GRID, "figures": [shaded, {**shaded, "shade_noise": False, "log_y": True}]}, results, tmp_path
    )
    assert [c["best_epochs"] for c in calls] == [{"A x=0.2": 7}, {"A x=0.2": 7}]  # B's metrics have no best_epoch
    assert [c["noise_epochs"] for c in calls] == [12, None]
    assert [c["log_y"] for c in calls] == [False, True]


def test_runs_whose_history_shows_a_cost_collapse_are_marked(tmp_path):
    shrunk = write_run(tmp_path, "A x=0.2", 0, acc=0.9, edges=0.9, seconds=60)
    recovered = write_run(tmp_path, "A x=0.2", 1, acc=0.9, edges=0.9, seconds=60)
    patient = write_run(tmp_path, "A x=0.2", 2, acc=0.9, edges=0.9, seconds=60)
    # seed 0: 0.08, 0.05, 0.04 < 10 % of the peak 1.0 for the last 3 epochs (the default patience); seed 1 recovers
    (shrunk / "history.csv").write_text("epoch,solver_input_std\n0,1.0\n1,0.5\n2,0.08\n3,0.05\n4,0.04\n")
    (recovered / "history.csv").write_text("epoch,solver_input_std\n0,1.0\n1,0.08\n2,0.05\n3,0.04\n4,0.2\n")
    (patient / "history.csv").write_text("epoch,solver_input_std\n0,1.0\n1,0.5\n2,0.08\n3,0.05\n4,0.04\n")
    (patient / "config.yaml").write_text("train: {collapse_patience: 4}\n")  # 3 shrunk epochs < 4
    (row,) = report.collect(GRID, tmp_path)
    assert row["cost_collapsed"] == [0]
    assert report.render(GRID, [row]).splitlines()[2].split(" | ")[3] == "3 (costs collapsed: seed 0)"


def test_export_copies_only_small_files_of_finished_runs(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    write_run(runs, "A x=0.2", 0, acc=0.9, edges=0.9, seconds=1)
    write_run(runs, "A x=0.2", 1, diverged=True)
    unfinished = runs / "B" / "seed0"
    unfinished.mkdir(parents=True)
    (unfinished / "history.csv").write_text("epoch\n")
    written = report.export(runs, results)
    assert [p.relative_to(results).as_posix() for p in written] == ["A_x_0.2/seed0", "A_x_0.2/seed1"]
    assert sorted(p.name for p in (results / "A_x_0.2" / "seed0").iterdir()) == [
        "config.yaml",
        "history.csv",
        "metrics.json",
    ]
    assert sorted(p.name for p in (results / "A_x_0.2" / "seed1").iterdir()) == ["config.yaml", "diverged.txt"]
    with pytest.raises(FileNotFoundError, match="runs_dir"):
        report.export(tmp_path / "nope", results)


def test_readme_block_round_trip(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:x -->\nold\n<!-- /results:x -->\nafter\n")
    assert report.readme_block(readme.read_text(), "x") == "old"
    report.write_readme_block(readme, "x", "| new |\n|---|")
    assert readme.read_text() == "intro\n<!-- results:x -->\n| new |\n|---|\n<!-- /results:x -->\nafter\n"
    with pytest.raises(ValueError, match="results:y"):
        report.write_readme_block(readme, "y", "z")


@pytest.mark.parametrize(
    "task", sorted(p.name for p in (ROOT / "results").iterdir()) if (ROOT / "results").is_dir() else []
)
def test_readme_tables_equal_the_generated_ones(task):
    """Every committed results/<task> has a README block, and the block is what `--report` generates."""
    block = report.readme_block((ROOT / "README.md").read_text(), task)
    assert block is not None, f"README has no `<!-- results:{task} -->` block"
    expected = report.table(task, ROOT / "configs", ROOT / "results" / task)
    assert block == expected, (
        f"README's {task} table is stale: run `identity-tf reproduce {task} --report --write-readme`"
    )


def test_sweep_plots_the_chosen_column_and_rejects_an_unknown_metric(tmp_path, monkeypatch):
    results = tmp_path / "results"
    write_run(results, "A x=0.2", 0, acc=0.9, edges=0.7, seconds=1)
    write_run(results, "A x=0.2", 1, acc=0.8, edges=0.5, seconds=1)
    write_run(results, "B", 0, acc=0.5, edges=0.25, seconds=1)
    calls = []
    monkeypatch.setattr(
        report, "_sweep_plot", lambda series, x_label, y_label, title, path: calls.append((series, y_label))
    )
    sweep = {"file": "s.png", "series": {"m": {0.2: "A x=0.2", 0: "B"}}}
    report.draw_figures({**GRID, "sweeps": [sweep, {**sweep, "metric": "edges"}]}, results, tmp_path)
    # edges x 100 (the grid's column scale): B at x=0 -> 25; A at x=0.2 -> mean 60, population std 10
    assert calls[1][1] == "edges"
    xs, means, stds = calls[1][0]["m"]
    assert xs == [0.0, 0.2] and means == pytest.approx([25.0, 60.0]) and stds == pytest.approx([0.0, 10.0])
    assert calls[0][1] == "acc" and calls[0][0]["m"][1] == pytest.approx([50.0, 85.0])
    with pytest.raises(
        ValueError, match=r"metric must be the grid's metric 'acc' or one of its columns \['edges'\], got 'nope'"
    ):
        report.draw_figures({**GRID, "sweeps": [{**sweep, "metric": "nope"}]}, results, tmp_path)
