"""benchmarks/peers/: the parts that run without torch (README's table, ratios, PyEPO's grid, the skip path).

The benchmark itself (PyTorch workers) never runs in the test suite.
"""

import importlib.util
import itertools
import json
import pathlib
import sys

import numpy as np
import pytest
import scipy.optimize

PEERS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "peers"


def load(name):
    sys.path.insert(0, str(PEERS))
    sys.path.insert(0, str(PEERS.parent))
    spec = importlib.util.spec_from_file_location(f"peers_{name}", PEERS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_peers = load("bench_peers")
table = load("table")


def result(task, ours_ms, peer_ms, ratio, cpu, target, met):
    return {
        "task": task,
        "rounds": 4,
        "steps_per_round": 2,
        "loadavg_before": [5.0, 4.25, 3.0],
        "loadavg_after": [6.0, 5.0, 3.5],
        "variants": {"ours_identity": {"median_ms": ours_ms, "batch_size": 50}, "peer_bb_lkh": {"median_ms": peer_ms}},
        "comparisons": [
            {"ours": "ours_identity", "peer": "peer_bb_lkh", **ratio, "cpu": cpu, "target": target, "met": met}
        ],
    }


def test_render_writes_one_row_per_comparison_and_the_load():
    tsp20 = result(
        "globe_tsp20",
        123.4,
        456.7,
        {"median": 0.27, "min": 0.214, "max": 0.3},
        {"median": 0.5, "min": 0.45, "max": 0.61},
        0.5,
        True,
    )
    missed = result(
        "globe_tsp10",
        99.6,
        100.0,
        {"median": 0.996, "min": 0.9, "max": 1.2},
        {"median": 1, "min": 1, "max": 1},
        0.5,
        False,
    )
    assert table.render([tsp20, missed]).splitlines() == [
        "| task (batch) | identity_tf step | PyTorch step | ours / PyTorch, wall | ours / PyTorch, CPU | target |",
        "|---|---|---|---|---|---|",
        "| Globe TSP(20) (50) | Identity + P_std (LKH): 123 ms | BB, LKH per instance: 457 ms | 0.27 (0.21–0.30) | "
        "0.50 (0.45–0.61) | ≤ 0.5: met |",
        "| Globe TSP(10) (50) | Identity + P_std (DP, XLA): 100 ms | BB, LKH per instance: 100 ms | 1.00 (0.90–1.20) | "
        "1.00 (1.00–1.00) | ≤ 0.5: **missed** |",
        "",
        "Median ms per train step over alternating rounds; ratios: median (min–max) of the per-round ratios. "
        "Globe TSP(20): 4 rounds of 2 steps, load average 5.0/4.2/3.0 before, 6.0/5.0/3.5 after. "
        "Globe TSP(10): 4 rounds of 2 steps, load average 5.0/4.2/3.0 before, 6.0/5.0/3.5 after.",
    ]


def test_load_reads_the_tasks_in_order(tmp_path):
    for task in ("pyepo_sp", "warcraft12"):
        (tmp_path / f"peers_{task}.json").write_text(json.dumps({"task": task}))
    (tmp_path / "peers_unknown.json").write_text("{}")
    assert [r["task"] for r in table.load(tmp_path)] == ["warcraft12", "pyepo_sp"]


def test_compare_takes_ratios_within_rounds():
    times = {"ours": [2.0, 9.0, 3.0], "peer": [4.0, 10.0, 12.0]}
    cpu = {"ours": [1.0, 1.0, 1.0], "peer": [1.0, 2.0, 4.0]}
    [entry] = bench_peers.compare([("ours", "peer", 0.8)], times, cpu)
    assert entry["per_round"] == [0.5, 0.9, 0.25]
    assert (entry["median"], entry["min"], entry["max"], entry["met"]) == (0.5, 0.25, 0.9, True)
    assert entry["cpu"] == {"median": 0.5, "min": 0.25, "max": 1.0}
    [untargeted] = bench_peers.compare([("ours", "peer", None)], times, cpu)
    assert "met" not in untargeted
    with pytest.raises(ValueError):  # rounds must pair up
        bench_peers.compare([("ours", "peer", None)], {"ours": [1.0], "peer": [1.0, 2.0]}, cpu)


def monotone_paths(rows, cols):
    """Every top-left -> bottom-right path of right/down moves, as the list of its (u, v) arcs."""
    for downs in itertools.combinations(range(rows + cols - 2), rows - 1):
        i = j = 0
        arcs = []
        for move in range(rows + cols - 2):
            u = i * cols + j
            i, j = (i + 1, j) if move in downs else (i, j + 1)
            arcs.append((u, i * cols + j))
        yield arcs


def test_flow_constraints_give_pyepo_shortest_paths():
    arcs = bench_peers.grid_arcs((5, 5))
    assert len(arcs) == len(set(arcs)) == 40
    a, b = bench_peers.flow_constraints((5, 5))
    paths = []
    for path in monotone_paths(5, 5):
        x = np.zeros(len(arcs))
        x[[arcs.index(arc) for arc in path]] = 1.0
        np.testing.assert_array_equal(a @ x, b)  # every path is feasible
        paths.append(x)
    assert len(paths) == 70  # C(8, 4)
    glop = bench_peers.GlopShortestPath((5, 5))
    rng = np.random.default_rng(0)
    for _ in range(5):  # the binary program's optimum is the best of the 70 enumerated paths
        costs = rng.random(len(arcs))
        solution = scipy.optimize.milp(
            costs, constraints=scipy.optimize.LinearConstraint(a, b, b), integrality=np.ones(40), bounds=(0, 1)
        )
        assert solution.fun == pytest.approx(min(costs @ x for x in paths), abs=1e-9)
        assert costs @ glop(costs) == pytest.approx(solution.fun, abs=1e-9)  # PyEPO's LP, in GLOP


def test_random_tours_are_tours():
    tours = bench_peers.random_tours(4, 6, np.random.default_rng(1))
    for tour in tours:
        assert (tour == tour.T).all() and (tour.sum(axis=1) == 2).all()
        city, previous, seen = 0, None, {0}
        for _ in range(5):  # one cycle through all cities
            city, previous = next(c for c in np.flatnonzero(tour[city]) if c != previous), city
            seen.add(city)
        assert len(seen) == 6 and tour[city, 0] == 1


def test_tasks_are_skipped_cleanly_without_their_packages(monkeypatch, tmp_path, capsys):
    assert bench_peers.missing(sys.executable, ["json", "surely_not_a_module_x"]) == ["surely_not_a_module_x"]
    monkeypatch.setattr(bench_peers, "missing", lambda python, modules: ["torch"])
    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["bench_peers.py", "--tasks", "warcraft12", "--out", str(out)])
    bench_peers.main()  # returns: exit status 0
    assert capsys.readouterr().out.splitlines() == [
        f"warcraft12: skipped, {sys.executable} lacks torch (pip install '.[peers]')",
        "nothing run: no task's peer packages are installed",
    ]
    assert not out.exists()


def test_output_paths():
    args = bench_peers.parse_args(["--save"])
    assert bench_peers._results.output_path(args, "peers_warcraft12") == table.RESULTS_DIR / "peers_warcraft12.json"
    assert bench_peers._results.output_path(bench_peers.parse_args([]), "peers_x").parent.name == "local"
    with pytest.raises(SystemExit):  # --out names one file: one task
        bench_peers.parse_args(["--out", "x.json"])


def test_readme_table_equals_the_generated_one():
    from identity_tf import report

    block = report.readme_block((PEERS.parents[1] / "README.md").read_text(), table.BLOCK)
    assert block is not None, "README has no <!-- results:peers --> block"
    assert block == table.render(table.load()), (
        "README's peer table is stale: run python benchmarks/peers/table.py --write-readme"
    )
