"""Run a paper table's grid of configs over seeds and print it beside the paper's numbers.

A grid is ``configs/<task>/reproduce.yaml``::

    table: Table 6 ...          # title
    metric: tour_accuracy       # key of metrics.json["test"]
    scale: 100                  # multiply before printing
    seeds: [0, 1, 2]
    rows:
      - name: TSP(5) Identity xi=0.2
        config: tsp5_identity_noise0.2.yaml
        set: {method.gradient_noise: 0.25}   # optional overrides
        paper: "99.67 ± 0.10"

Results go to ``<out>/<row>/seed<N>/`` (each a normal run directory, so an interrupted grid resumes), the table to
``<out>/table.md`` and ``<out>/table.json``, and the validation curves of every row (first seed) to
``<out>/curves.png`` (e.g. the N-ELBO curves of the paper's DVAE figures).
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import yaml

from identity_tf import train


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", name).strip("_")


def load_grid(task: str, configs_root: pathlib.Path) -> dict:
    path = configs_root / task / "reproduce.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"No grid for task {task!r}: expected {path}")
    grid = yaml.safe_load(path.read_text())
    for key in ("table", "metric", "rows"):
        if key not in grid:
            raise train.ConfigError(f"{path} misses the key {key!r}")
    return grid


def run(
    task: str, configs_root, out_dir, quick: bool = False, seeds=None, only=None, strategy="default", verbose=0
) -> str:
    """Runs the grid (skipping finished runs) and returns the Markdown table."""
    configs_root, out_dir = pathlib.Path(configs_root), pathlib.Path(out_dir)
    grid = load_grid(task, configs_root)
    seeds = list(seeds or grid.get("seeds", [0]))
    scale = float(grid.get("scale", 1.0))
    rows = [r for r in grid["rows"] if not only or r["name"] in only]
    if only and not rows:
        raise train.ConfigError(f"No rows named {only}. Rows: {[r['name'] for r in grid['rows']]}")
    results = []
    for row in rows:
        values = []
        for seed in seeds:
            run_dir = out_dir / _slug(row["name"]) / f"seed{seed}"
            metrics_path = run_dir / "metrics.json"
            if not metrics_path.exists():
                overrides = dict(row.get("set") or {})
                overrides["train.seed"] = seed
                config = train.load_config(configs_root / task / row["config"], overrides, quick=quick)
                print(f"[reproduce] {row['name']} seed {seed} -> {run_dir}", flush=True)
                train.train(config, run_dir, strategy=strategy, verbose=verbose, plots=(seed == seeds[0]))
            metrics = json.loads(metrics_path.read_text())
            values.append(scale * metrics["test"][grid["metric"]])
        results.append(
            {
                "name": row["name"],
                "values": values,
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
                "paper": row.get("paper", ""),
            }
        )
    header = f"{grid['table']}{' (--quick sizes)' if quick else ''}; metric: {grid['metric']}"
    lines = [f"### {header}", "", f"| run | ours (mean ± std over seeds {seeds}) | paper |", "|---|---|---|"]
    lines += [f"| {r['name']} | {r['mean']:.2f} ± {r['std']:.2f} | {r['paper']} |" for r in results]
    table = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.md").write_text(table + "\n")
    (out_dir / "table.json").write_text(json.dumps({"table": header, "seeds": seeds, "rows": results}, indent=2))
    from identity_tf import plots

    histories = {r["name"]: out_dir / _slug(r["name"]) / f"seed{seeds[0]}" / "history.csv" for r in rows}
    plots.compare_curves(histories, f"val_{grid['metric']}", out_dir / "curves.png", scale=scale)
    return table
