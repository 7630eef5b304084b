"""README's peer-benchmark table, generated from ``benchmarks/results/peers_<task>.json`` (``bench_peers.py --save``).

Usage::

    python benchmarks/peers/table.py                  # print the markdown
    python benchmarks/peers/table.py --write-readme   # replace README's <!-- results:peers --> block

Needs neither torch nor TensorFlow. ``tests/test_peer_benchmarks.py`` checks README's block against this output.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import bench_peers  # noqa: E402  (defines TASKS; imports neither torch nor TensorFlow)

RESULTS_DIR = REPO / "benchmarks" / "results"
BLOCK = "peers"

TITLES = {
    "warcraft12": "Warcraft 12×12",
    "globe_tsp10": "Globe TSP(10)",
    "globe_tsp20": "Globe TSP(20)",
    "pyepo_sp": "PyEPO shortest path 5×5",
}
#: (task or None for any task, variant) -> label
LABELS = {
    (None, "ours_identity"): "Identity",
    (None, "ours_bb"): "BB",
    ("globe_tsp10", "ours_identity"): "Identity + P_std (DP, XLA)",
    ("globe_tsp10", "ours_bb"): "BB (DP, XLA)",
    ("globe_tsp20", "ours_identity"): "Identity + P_std (LKH)",
    ("globe_tsp20", "ours_bb"): "BB (LKH)",
    ("pyepo_sp", "ours_identity"): "Identity (HiGHS ILP)",
    ("pyepo_sp", "ours_bb"): "BB (HiGHS ILP)",
    ("pyepo_sp", "ours_identity_glop"): "Identity (GLOP, as PyEPO)",
    ("pyepo_sp", "ours_bb_glop"): "BB (GLOP, as PyEPO)",
    (None, "peer_bb"): "BB, original heapq Dijkstra",
    (None, "peer_identity"): "Identity, original heapq Dijkstra",
    (None, "peer_bb_scipy"): "BB, scipy Dijkstra",
    (None, "peer_bb_passive"): "BB, original heapq Dijkstra, OMP_WAIT_POLICY=PASSIVE",
    (None, "peer_bb_dp"): "BB, Held-Karp DP (XLA) per instance",
    (None, "peer_bb_cp_sat"): "BB, CP-SAT per instance",
    (None, "peer_bb_lkh"): "BB, LKH per instance",
    (None, "peer_bb_dp_passive"): "BB, Held-Karp DP (XLA) per instance, OMP_WAIT_POLICY=PASSIVE",
    (None, "peer_bb_lkh_passive"): "BB, LKH per instance, OMP_WAIT_POLICY=PASSIVE",
    (None, "pyepo_nid"): "PyEPO NID (OR-Tools GLOP)",
    (None, "pyepo_dbb"): "PyEPO DBB (OR-Tools GLOP)",
}


def label(task: str, variant: str) -> str:
    return LABELS.get((task, variant), LABELS.get((None, variant), variant))


def load(results_dir=RESULTS_DIR) -> list[dict]:
    """The tracked results, in ``bench_peers.TASKS`` order (tasks without a file are left out)."""
    results_dir = pathlib.Path(results_dir)
    found = []
    for task in bench_peers.TASKS:
        path = results_dir / f"{bench_peers.NAME}_{task}.json"
        if path.is_file():
            found.append(json.loads(path.read_text()))
    return found


def _ratio(summary: dict) -> str:
    return f"{summary['median']:.2f} ({summary['min']:.2f}–{summary['max']:.2f})"


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def render(results: list[dict]) -> str:
    """The markdown table: one row per comparison, then one line per task with its rounds and load.

    Example:
    >>> variants = {"ours_identity": {"median_ms": 10.0, "batch_size": 8}, "peer_bb": {"median_ms": 40.0}}
    >>> comparison = {"ours": "ours_identity", "peer": "peer_bb", "median": 0.25, "min": 0.2, "max": 0.3,
    ...               "cpu": {"median": 0.5, "min": 0.4, "max": 0.6}, "target": 0.8, "met": True}
    >>> result = {"task": "warcraft12", "rounds": 3, "steps_per_round": 1, "loadavg_before": [2.0, 2.0, 2.0],
    ...           "loadavg_after": [3.0, 2.5, 2.0], "variants": variants, "comparisons": [comparison]}
    >>> print(render([result]))  # doctest: +NORMALIZE_WHITESPACE
    | task (batch) | identity_tf step | PyTorch step | ours / PyTorch, wall | ours / PyTorch, CPU | target |
    |---|---|---|---|---|---|
    | Warcraft 12×12 (8) | Identity: 10 ms | BB, original heapq Dijkstra: 40 ms | 0.25 (0.20–0.30) | 0.50 (0.40–0.60) | ≤ 0.8: met |
    <BLANKLINE>
    Median ms per train step over alternating rounds; ratios: median (min–max) of the per-round ratios. Warcraft 12×12: 3 rounds of 1 step, load average 2.0/2.0/2.0 before, 3.0/2.5/2.0 after.
    """
    lines = [
        "| task (batch) | identity_tf step | PyTorch step | ours / PyTorch, wall | ours / PyTorch, CPU | target |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for result in results:
        task, variants = result["task"], result["variants"]
        for c in result["comparisons"]:
            ours, peer = variants[c["ours"]], variants[c["peer"]]
            target = "" if c["target"] is None else f"≤ {c['target']}: {'met' if c['met'] else '**missed**'}"
            lines.append(
                f"| {TITLES.get(task, task)} ({ours['batch_size']}) | {label(task, c['ours'])}: "
                f"{ours['median_ms']:.0f} ms | {label(task, c['peer'])}: {peer['median_ms']:.0f} ms | "
                f"{_ratio(c)} | {_ratio(c['cpu'])} | {target} |"
            )
        notes.append(
            f"{TITLES.get(task, task)}: {result['rounds']} rounds of {result['steps_per_round']} step"
            f"{'s' if result['steps_per_round'] != 1 else ''}, load average {_load(result['loadavg_before'])} "
            f"before, {_load(result['loadavg_after'])} after."
        )
    caption = (
        "Median ms per train step over alternating rounds; ratios: median (min–max) of the per-round ratios. "
        + " ".join(notes)
    )
    return "\n".join(lines) + "\n\n" + caption


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(RESULTS_DIR), help="folder of peers_<task>.json")
    parser.add_argument("--write-readme", action="store_true", help="replace README's <!-- results:peers --> block")
    args = parser.parse_args(argv)
    text = render(load(args.results))
    print(text)
    if args.write_readme:
        from identity_tf import report

        report.write_readme_block(REPO / "README.md", BLOCK, text)


if __name__ == "__main__":
    main()
