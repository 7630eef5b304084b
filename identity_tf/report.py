"""Results tables that cannot go stale: generated from committed result files, checked against README.

A finished run directory is large (checkpoints, plots); its small files — ``config.yaml``, ``metrics.json``,
``history.csv`` (and ``diverged.txt`` for a run that diverged) — are what a number in README rests on. They are
committed under ``results/<task>/<row>/seed<N>/`` (the layout of ``identity-tf reproduce``'s run directories), and
README's results tables are generated from them:

.. code-block:: bash

    identity-tf reproduce TASK --export runs/reproduce_TASK   # copy the small files into results/
    identity-tf reproduce TASK --report                       # print the table from results/
    identity-tf reproduce TASK --report --write-readme        # and replace README's block

README holds each task's table between ``<!-- results:<task> -->`` and ``<!-- /results:<task> -->``;
``tests/test_report.py`` regenerates every block from ``results/`` and fails when README differs.

A row's number is the mean ± std (population) over the seeds found in ``results/`` (not the grid's seed list: a
row reports what was run), with the run count beside it. A run that diverged has no number: it is listed in the
row's run count and left out of the mean. A run whose metrics say ``"status": "collapsed"`` (or any status other
than ``ok``) keeps its number in the mean — it is a real, bad result — and is listed beside the count. Train time
is ``metrics.json["train_seconds"]`` (paper Table 8); a run resumed after an interruption timed only the epochs since
the resume, so its time is ``seconds_per_epoch × epochs``, marked "(est.)". A run whose ``history.csv`` shows a cost
collapse (:func:`identity_tf.cost_collapse.cost_collapse` on its ``solver_input_std`` column: the costs shrank below
10 % of their peak for the last ``train.collapse_patience`` epochs) is marked "(costs collapsed: seed N)"; runs
logged before that column existed have no mark. The grid's ``scale`` multiplies its
``metric`` and, unless ``column_scale`` is given, its extra ``columns``.

``--report`` also draws the grid's ``figures`` (curves from the committed ``history.csv`` files, a marker at each
run's tested epoch, with ``shade_noise: true`` the margin-noise epochs of the first run's config shaded, with
``log_y: true`` a logarithmic value axis) and ``sweeps`` (a metric against a swept value, one line per method, e.g.
the paper's Fig. 4a) into ``docs/figures/``.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import re
import shutil

import yaml

from identity_tf.cost_collapse import cost_collapse

SMALL_FILES = ("config.yaml", "metrics.json", "history.csv", "diverged.txt")
_SEED_DIR = re.compile(r"^seed(\d+)$")


def slug(name: str) -> str:
    """The directory name of a grid row: ``"TSP(5) BB lambda=20"`` -> ``"TSP_5_BB_lambda_20"``."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", name).strip("_")


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _runs(row_dir: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    if not row_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in row_dir.iterdir() if (m := _SEED_DIR.match(p.name)) and p.is_dir()]
    return sorted(found)


def collect(grid: dict, results_dir: str | pathlib.Path) -> list[dict]:
    """One entry per grid row that has at least one run under ``results_dir``.

    Each entry: ``name``, ``paper``, ``seeds`` (all found), ``values`` (scaled metric of the good runs),
    ``columns`` (``{column: [values]}``), ``minutes`` (train time of each good run) and ``failed``
    (``["seed 1: diverged", ...]``), ``cost_collapsed`` (seeds whose ``history.csv`` shows a cost collapse, see
    :func:`identity_tf.cost_collapse.cost_collapse`).
    """
    results_dir = pathlib.Path(results_dir)
    scale = float(grid.get("scale", 1.0))
    column_scale = float(grid.get("column_scale", scale))
    columns = list(grid.get("columns") or [])
    rows = []
    for row in grid["rows"]:
        runs = _runs(results_dir / slug(row["name"]))
        if not runs:
            continue
        entry = {
            "name": row["name"],
            "paper": row.get("paper", ""),
            "seeds": [seed for seed, _ in runs],
            "values": [],
            "columns": {column: [] for column in columns},
            "minutes": [],
            "estimated": False,  # a resumed run's minutes are seconds_per_epoch x epochs
            "failed": [],
            "cost_collapsed": [],  # seeds whose history.csv shows a cost collapse
        }
        for seed, path in runs:
            if (path / "diverged.txt").exists():
                entry["failed"].append(f"seed {seed}: diverged")
                continue
            metrics_path = path / "metrics.json"
            if not metrics_path.exists():
                entry["failed"].append(f"seed {seed}: unfinished")
                continue
            metrics = json.loads(metrics_path.read_text())
            status = metrics.get("status", "ok")
            if status != "ok":  # e.g. "collapsed": its numbers are real, so they stay in the mean, marked
                entry["failed"].append(f"seed {seed}: {status}")
            if _costs_collapsed(path):
                entry["cost_collapsed"].append(seed)
            test = metrics["test"]
            entry["values"].append(scale * float(test[grid["metric"]]))
            for column in columns:
                if column in test:
                    entry["columns"][column].append(column_scale * float(test[column]))
            if metrics.get("resumed_at_epoch") and metrics.get("seconds_per_epoch"):  # only the part since the resume
                entry["minutes"].append(float(metrics["seconds_per_epoch"]) * int(metrics["epochs"]) / 60.0)
                entry["estimated"] = True
            elif "train_seconds" in metrics:
                entry["minutes"].append(float(metrics["train_seconds"]) / 60.0)
        rows.append(entry)
    return rows


def _costs_collapsed(run_dir: pathlib.Path) -> bool:
    """:func:`identity_tf.cost_collapse.cost_collapse` on a committed run's ``solver_input_std`` history."""
    history = run_dir / "history.csv"
    if not history.exists():
        return False
    with open(history) as f:
        stds = [r["solver_input_std"] for r in csv.DictReader(f) if r.get("solver_input_std") not in (None, "")]
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
    patience = ((config or {}).get("train") or {}).get("collapse_patience", 3)
    return bool(stds) and cost_collapse(stds, patience) is not None


def _cell(values: list[float], digits: int = 2) -> str:
    if not values:
        return "—"
    mean, std = _mean_std(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def render(grid: dict, rows: list[dict]) -> str:
    """The Markdown table of :func:`collect`'s rows (deterministic: README is compared with it byte for byte)."""
    columns = list(grid.get("columns") or [])
    header = ["run", f"{grid['metric']} (ours)", *[f"{c} (ours)" for c in columns], "runs", "train min/run", "paper"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        runs = f"{len(row['values'])}"
        if row["failed"]:
            runs += f" (+ {'; '.join(row['failed'])})"
        if row["cost_collapsed"]:
            seeds = row["cost_collapsed"]
            runs += f" (costs collapsed: seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
        minutes = f"{_mean_std(row['minutes'])[0]:.1f}" if row["minutes"] else "—"
        minutes += " (est.)" if row["estimated"] else ""
        cells = [
            row["name"],
            _cell(row["values"]),
            *[_cell(row["columns"][c]) for c in columns],
            runs,
            minutes,
            row["paper"] or "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_grid(task: str, configs_root: str | pathlib.Path) -> dict:
    path = pathlib.Path(configs_root) / task / "reproduce.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"No grid for task {task!r}: expected {path}")
    return yaml.safe_load(path.read_text())


def table(task: str, configs_root, results_dir) -> str:
    """The results table of ``task`` from the files under ``results_dir`` (``results/<task>``)."""
    grid = load_grid(task, configs_root)
    return render(grid, collect(grid, results_dir))


def export(runs_dir, results_dir) -> list[pathlib.Path]:
    """Copies the small files of every ``<row>/seed<N>/`` run under ``runs_dir`` into ``results_dir``.

    Only finished (``metrics.json``) or diverged (``diverged.txt``) runs are exported; returns the run directories
    written.
    """
    runs_dir, results_dir = pathlib.Path(runs_dir), pathlib.Path(results_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"`runs_dir` is not a directory. Received: {str(runs_dir)!r}")
    written = []
    for row_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        for _, run in _runs(row_dir):
            if not ((run / "metrics.json").exists() or (run / "diverged.txt").exists()):
                continue
            target = results_dir / row_dir.name / run.name
            target.mkdir(parents=True, exist_ok=True)
            for name in SMALL_FILES:
                if (run / name).exists():
                    shutil.copyfile(run / name, target / name)
            written.append(target)
    return written


def readme_block(readme_text: str, task: str) -> str | None:
    """The text between README's ``<!-- results:<task> -->`` markers (None when there is no such block)."""
    begin, end = f"<!-- results:{task} -->\n", f"<!-- /results:{task} -->"
    match = re.search(re.escape(begin) + "(.*?)" + re.escape(end), readme_text, re.S)
    return match.group(1).removesuffix("\n") if match else None


def write_readme_block(readme_path, task: str, text: str) -> None:
    """Replaces README's block of ``task`` with ``text`` (the markers must exist)."""
    readme_path = pathlib.Path(readme_path)
    content = readme_path.read_text()
    if readme_block(content, task) is None:
        raise ValueError(
            f"{readme_path} has no block for {task!r}: add the lines `<!-- results:{task} -->` and "
            f"`<!-- /results:{task} -->` where the table goes."
        )
    begin, end = f"<!-- results:{task} -->\n", f"<!-- /results:{task} -->"
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme_path.write_text(head + begin + text + "\n" + end + tail)


def draw_figures(grid: dict, results_dir, out_dir, prefix: str = "") -> list[pathlib.Path]:
    """Draws the grid's ``figures`` (curves of the first seed found) and ``sweeps`` from ``results_dir``.

    A sweep is ``{file, title, x_label, metric (default: the grid's; else one of its ``columns``), series: {label:
    {x value: row name}}}``; each point is the mean over the row's good runs, with the std as an error bar. Returns
    the files written.
    """
    from identity_tf import plots

    columns = list(grid.get("columns") or [])
    for sweep in grid.get("sweeps") or []:  # checked before any file is written
        metric = sweep.get("metric", grid["metric"])
        if metric != grid["metric"] and metric not in columns:
            raise ValueError(
                f"sweep {sweep['file']!r}: metric must be the grid's metric {grid['metric']!r} or one of its columns "
                f"{columns}, got {metric!r}"
            )
    results_dir, out_dir = pathlib.Path(results_dir), pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for figure in grid.get("figures") or []:
        histories, best_epochs, noise_epochs = {}, {}, None
        for name in figure["rows"]:
            runs = _runs(results_dir / slug(name))
            if runs and (runs[0][1] / "history.csv").exists():
                run_dir = runs[0][1]
                histories[name] = run_dir / "history.csv"
                if (run_dir / "metrics.json").exists():
                    best = json.loads((run_dir / "metrics.json").read_text()).get("best_epoch")
                    if best is not None:
                        best_epochs[name] = int(best)
                if figure.get("shade_noise") and noise_epochs is None and (run_dir / "config.yaml").exists():
                    noise_epochs = (yaml.safe_load((run_dir / "config.yaml").read_text()).get("method") or {}).get(
                        "noise_epochs"
                    )
        if histories:
            path = out_dir / f"{prefix}{figure['file']}"
            plots.compare_curves(
                histories,
                figure["column"],
                path,
                scale=figure.get("scale", 1.0),
                title=figure.get("title"),
                best_epochs=best_epochs,
                noise_epochs=noise_epochs,
                log_y=bool(figure.get("log_y")),
            )
            written.append(path)
    collected = {row["name"]: row for row in collect(grid, results_dir)}
    for sweep in grid.get("sweeps") or []:
        metric = sweep.get("metric", grid["metric"])
        series = {}
        for label, points in sweep["series"].items():
            xs, means, stds = [], [], []
            for x, name in sorted(points.items(), key=lambda item: float(item[0])):
                row = collected.get(name)
                values = (row["values"] if metric == grid["metric"] else row["columns"][metric]) if row else []
                if values:
                    mean, std = _mean_std(values)
                    xs.append(float(x))
                    means.append(mean)
                    stds.append(std)
            if xs:
                series[label] = (xs, means, stds)
        if series:
            path = out_dir / f"{prefix}{sweep['file']}"
            _sweep_plot(series, sweep.get("x_label", "x"), metric, sweep.get("title"), path)
            written.append(path)
    return written


def _sweep_plot(series: dict, x_label: str, y_label: str, title: str | None, path: pathlib.Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.subplots()
    for label, (xs, means, stds) in series.items():
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
