"""Benchmarks write to a git-ignored, run-specific file unless asked to update README's tracked results."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import _results  # noqa: E402

SCRIPTS = {
    "bench_gradients.py": "gradients",
    "bench_shortest_path.py": "shortest_path",
    "bench_tsp.py": "tsp",
    "bench_graph_matching.py": "graph_matching",
    "bench_ranking.py": "ranking",
    "globe_distance_cap.py": "globe_distance_cap",
    "bench_tsp_auto.py": "tsp_auto",
    "bench_tsp_lkh.py": "tsp_lkh",
    "bench_train_step.py": "execution_policy",
}


def load(script):
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines functions only; main() is not run
    return module


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_default_run_leaves_the_tracked_results_alone(script, tmp_path):
    module = load(script)
    name = SCRIPTS[script]
    assert module.NAME == name
    tracked = _results.RESULTS_DIR / f"{name}.json"
    assert tracked.is_file()  # README's numbers
    default = _results.output_path(module.parse_args([]), name)
    assert default.parent == _results.LOCAL_DIR and default.name.startswith(f"{name}-") and default != tracked
    assert _results.output_path(module.parse_args(["--save"]), name) == tracked
    assert _results.output_path(module.parse_args(["--out", str(tmp_path / "x.json")]), name) == tmp_path / "x.json"
    with pytest.raises(SystemExit):  # one or the other
        module.parse_args(["--save", "--out", "x.json"])


def test_local_results_are_ignored_by_git():
    repo = BENCHMARKS.parent
    probe = _results.LOCAL_DIR.relative_to(repo) / "tsp-20250101-000000.json"
    result = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=repo, check=False)
    assert result.returncode == 0, f"{probe} is not ignored by git"


def test_write_records_the_load(tmp_path, capsys):
    path = _results.write(tmp_path / "sub" / "r.json", {"repeats": 3, "results": [1, 2]})
    record = json.loads(path.read_text())
    assert record["repeats"] == 3 and record["results"] == [1, 2]
    assert len(record["loadavg"]) == 3 and record["cpu_count"] >= 1
    assert f"wrote {path}" in capsys.readouterr().out
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]
