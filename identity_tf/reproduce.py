"""Run a paper table's grid of configs over seeds and print it beside the paper's numbers.

A grid is ``configs/<task>/reproduce.yaml``::

    table: Table 6 ...          # title
    metric: tour_accuracy       # key of metrics.json["test"]
    scale: 100                  # multiply before printing
    seeds: [0, 1, 2]
    seed_keys: [train.seed]     # optional: the config keys a restart sets to its seed (default train.seed)
    columns: [rationale_precision]   # optional: more test metrics, printed unscaled beside the main one (— if absent)
    column_scale: 100           # optional: what --report multiplies the columns by (default: scale)
    rows:
      - name: TSP(5) Identity xi=0.2
        config: tsp5_identity_noise0.2.yaml
        set: {method.gradient_noise: 0.25}   # optional overrides
        paper: "99.67 ± 0.10"
    figures:                    # optional: curves of chosen rows (first seed) from their history.csv
      - file: fig3.png
        title: Identity vs I-MLE
        column: val_nelbo       # or a list of columns, one panel each
        rows: [TSP(5) Identity xi=0.2]

Results go to ``<out>/<row>/seed<N>/`` (each a normal run directory, so an interrupted grid resumes), the table to
``<out>/table.md`` and ``<out>/table.json``, the validation curves of every row (first seed) to ``<out>/curves.png``
and each of the grid's ``figures`` to ``<out>/<file>`` (e.g. the paper's DVAE Figures 3 and 5-7). A figure is drawn
from the rows that ran (with ``--only``, some of its curves may be missing). A run that diverges
(:class:`identity_tf.train.TrainingDiverged`) leaves ``<run>/diverged.txt`` and is left out of its row's mean (a row
whose every run diverged reads "diverged"); the grid goes on. A run that finished collapsed (``metrics.json``
``"status": "collapsed"``, see :mod:`identity_tf.run_health`) stays in the mean and its row says "(N of M
collapsed)"; runs whose costs collapsed (``metrics.json["cost_collapse"]``) are listed under the table. Finished
and diverged runs are not rerun (delete the
run directory to retry).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import yaml

from identity_tf import run_dir as run_dir_lib
from identity_tf import report, train


def _summary(values) -> dict:
    """Mean and std over the finite values (NaN when none is finite)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite))}


def load_grid(task: str, configs_root: pathlib.Path) -> dict:
    path = configs_root / task / "reproduce.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"No grid for task {task!r}: expected {path}")
    grid = yaml.safe_load(path.read_text())
    for key in ("table", "metric", "rows"):
        if key not in grid:
            raise train.ConfigError(f"{path} misses the key {key!r}")
    # column_scale and sweeps are read by identity_tf.report
    valid = {"table", "metric", "scale", "column_scale", "seeds", "seed_keys", "columns", "rows", "figures", "sweeps"}
    unknown = sorted(set(grid) - valid)
    if unknown:
        raise train.ConfigError(f"{path}: unknown key(s) {unknown}. Valid keys: {sorted(valid)}")
    names = [row["name"] for row in grid["rows"]]
    for figure in grid.get("figures") or []:
        missing = [name for name in figure.get("rows", []) if name not in names]
        if "file" not in figure or ("column" not in figure) or missing:
            raise train.ConfigError(
                f"{path}: a figure needs `file`, `column` and `rows` naming rows of the grid. "
                f"Received: {figure!r}; unknown rows: {missing}; rows: {names}"
            )
    return grid


def run(
    task: str,
    configs_root,
    out_dir,
    quick: bool = False,
    seeds=None,
    only=None,
    strategy="default",
    verbose=0,
    overrides: dict | None = None,
) -> str:
    """Runs the grid (skipping finished runs) and returns the Markdown table.

    ``overrides`` (dotted keys, e.g. ``{"train.epochs": 10}``) apply to every row after the row's own ``set``;
    the restart's seed keys come last. A run directory that holds ``metrics.json`` is reused as it is.
    """
    configs_root, out_dir = pathlib.Path(configs_root), pathlib.Path(out_dir)
    grid = load_grid(task, configs_root)
    seeds = list(seeds or grid.get("seeds", [0]))
    seed_keys = list(grid.get("seed_keys") or ["train.seed"])
    columns = list(grid.get("columns") or [])
    scale = float(grid.get("scale", 1.0))
    rows = [r for r in grid["rows"] if not only or r["name"] in only]
    if only and not rows:
        raise train.ConfigError(f"No rows named {only}. Rows: {[r['name'] for r in grid['rows']]}")

    def run_once(row, seed) -> dict | None:
        """Metrics of one row and seed (metrics.json): read from a finished run, else trained; None if it diverged."""
        run_dir = out_dir / report.slug(row["name"]) / f"seed{seed}"
        metrics_path = run_dir / "metrics.json"
        if not metrics_path.exists():
            if (run_dir / "diverged.txt").exists():  # diverged before: not rerun
                return None
            row_overrides = {**(row.get("set") or {}), **(overrides or {})}
            row_overrides.update({key: seed for key in seed_keys})
            config = train.load_config(configs_root / task / row["config"], row_overrides, quick=quick)
            print(f"[reproduce] {row['name']} seed {seed} -> {run_dir}", flush=True)
            try:
                train.train(config, run_dir, strategy=strategy, verbose=verbose, plots=(seed == seeds[0]))
            except train.TrainingDiverged as error:  # recorded in the table; the grid goes on
                print(f"[reproduce] {row['name']} seed {seed}: {error}", flush=True)
                (run_dir / "diverged.txt").write_text(f"{error}\n")
                return None
        return run_dir_lib.read_json(metrics_path)

    results, diverged, collapsed, costs_collapsed = [], [], [], []
    for row in rows:
        values, extra, row_collapsed = [], {column: [] for column in columns}, 0
        for seed in seeds:
            metrics = run_once(row, seed)
            if metrics is None:
                diverged.append(f"{row['name']} (seed {seed})")
            elif metrics.get("status") == "collapsed":  # kept in the mean, marked in the table
                collapsed.append(f"{row['name']} (seed {seed})")
                row_collapsed += 1
            if metrics is not None and metrics.get("cost_collapse"):  # status ok; its costs shrank (paper 3.6)
                epoch = metrics["cost_collapse"]["epoch"]
                costs_collapsed.append(f"{row['name']} (seed {seed}, from epoch {epoch})")
            test = metrics["test"] if metrics is not None else {}
            values.append(scale * test[grid["metric"]] if test else float("nan"))
            for column in columns:
                extra[column].append(test.get(column, float("nan")))
        results.append(
            {
                "name": row["name"],
                "values": values,
                **_summary(values),
                "paper": row.get("paper", ""),
                "collapsed": row_collapsed,
                **{column: {"values": v, **_summary(v)} for column, v in extra.items()},
            }
        )
    header = f"{grid['table']}{' (--quick sizes)' if quick else ''}; metric: {grid['metric']}"
    extra_header = "".join(f" {column} |" for column in columns)
    lines = [
        f"### {header}",
        "",
        f"| run | ours (mean ± std over seeds {seeds}) |{extra_header} paper |",
        "|---|---|" + "---|" * len(columns) + "---|",
    ]
    for r in results:
        failed = int(np.sum(np.isnan(r["values"])))
        ours = "diverged" if np.isnan(r["mean"]) else f"{r['mean']:.2f} ± {r['std']:.2f}"
        ours += f" ({failed} of {len(seeds)} diverged)" if 0 < failed < len(seeds) else ""
        ours += f" ({r['collapsed']} of {len(seeds)} collapsed)" if r["collapsed"] else ""
        cells = "".join(
            " — |" if np.isnan(r[c]["mean"]) else f" {r[c]['mean']:.3f} ± {r[c]['std']:.3f} |" for c in columns
        )
        lines.append(f"| {r['name']} | {ours} |{cells} {r['paper']} |")
    if diverged:
        lines += ["", f"Diverged (non-finite values; the row's mean is NaN, see diverged.txt): {', '.join(diverged)}"]
    if collapsed:
        lines += ["", f"Collapsed (constant predictions or solver inputs, see metrics.json): {', '.join(collapsed)}"]
    if costs_collapsed:
        lines += ["", f"Costs collapsed (solver inputs shrank, see metrics.json): {', '.join(costs_collapsed)}"]
    table = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.md").write_text(table + "\n")
    (out_dir / "table.json").write_text(json.dumps({"table": header, "seeds": seeds, "rows": results}, indent=2))
    from identity_tf import plots

    def history(name):
        return out_dir / report.slug(name) / f"seed{seeds[0]}" / "history.csv"

    plots.compare_curves(
        {r["name"]: history(r["name"]) for r in rows}, f"val_{grid['metric']}", out_dir / "curves.png", scale=scale
    )
    ran = {r["name"] for r in rows}
    for figure in grid.get("figures") or []:
        histories = {name: history(name) for name in figure["rows"] if name in ran}
        if histories:
            plots.compare_curves(
                histories,
                figure["column"],
                out_dir / figure["file"],
                scale=figure.get("scale", 1.0),
                title=figure.get("title"),
            )
    return table
