"""benchmarks/gpu_check.sh on CPU: its failure modes (no GPU, no usable Python) and one tiny end-to-end run.

The end-to-end run is small on purpose: ``--allow-cpu --tiny`` with one task, one strategy and XLA off for the
training runs (2 steps on a tiny Globe TSP(10) built in a private data directory), the solver cases at tiny
sizes, the XLA x MirroredStrategy probe on two logical CPUs and the train-step benchmark of the Gumbel DVAE
only. It still starts four Python processes that import TensorFlow: 69 s on this project's 2-core machine,
over 3 minutes when other jobs load it. The no-GPU test imports TensorFlow once (6 s; 40 s under load).
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run(args, env=None, timeout=600):
    env = {**os.environ, "IDENTITY_TF_PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False
    )


@pytest.fixture
def data_dir(tmp_path):
    from identity_tf.datasets import cache

    path = tmp_path / "data"
    path.mkdir()
    downloads = pathlib.Path(cache.data_dir()) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    os.symlink(downloads, path / "downloads")  # verified downloads are shared, the built datasets are private
    return str(path)


def test_without_a_gpu_it_fails_loudly(tmp_path):
    result = run(["--out-dir", str(tmp_path)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "FAILED: no GPU is visible to TensorFlow" in result.stderr and "--allow-cpu" in result.stderr
    env = json.loads((tmp_path / "gpu_env.json").read_text())
    assert env["gpus"] == [] and env["device"] == "none"


def test_without_the_packages_it_says_what_is_missing(tmp_path):
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')  # no site-packages: no TensorFlow
    bare.chmod(0o755)
    result = run(["--allow-cpu"], env={"IDENTITY_TF_PYTHON": str(bare)})
    assert result.returncode == 3
    assert "lacks the packages: tensorflow keras" in result.stderr and "Nothing was run" in result.stderr
    result = run([], env={"IDENTITY_TF_PYTHON": str(tmp_path / "missing-python")})
    assert result.returncode == 3 and "no Python interpreter" in result.stderr


def test_tiny_run_on_cpu(tmp_path, data_dir):
    out = tmp_path / "results"
    args = ["--allow-cpu", "--tiny", "--out-dir", str(out), "--data-dir", data_dir, "--tasks", "globe_tsp"]
    args += ["--strategies", "default", "--jit", "false", "--set", "data.num_train=120", "--set", "data.num_test=50"]
    result = run(args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "gpu_check: OK" in result.stdout

    env = json.loads((out / "gpu_env.json").read_text())
    assert env["device"] == "CPU (--allow-cpu)" and env["tensorflow"]
    solvers = json.loads((out / "gpu_solvers.json").read_text())["rows"]
    assert {(r["solver"], r["mode"]) for r in solvers} == {
        (name, mode) for name in ("ShortestPath", "TSP dp", "TopK", "Ranking") for mode in ("xla", "graph")
    }
    assert all(r["ms_per_solve"] > 0 for r in solvers)
    topk = next(r for r in solvers if r["solver"] == "TopK" and r["mode"] == "xla")
    assert topk["cpu_ms_per_solve"] > 0 and topk["cpu_over_this"] == topk["cpu_ms_per_solve"] / topk["ms_per_solve"]

    probe = json.loads((out / "gpu_mirrored_xla.json").read_text())
    assert probe["replicas"] == 2 and probe["jit_False"]["ok"]
    assert not probe["jit_True"]["ok"] and "located in device" in probe["jit_True"]["error"]  # DESIGN.md section 8

    steps = json.loads((out / "gpu_train_step.json").read_text())
    (row,) = steps["rows"]
    assert row["model"] == "dvae_gumbel" and row["xla_step_ms"] > 0 and row["no_xla_step_ms"] > 0
    assert row["cpu_no_xla_step_ms"] > 0 and row["cpu_over_this_no_xla_step"] > 0  # vs execution_policy.json

    (train_run,) = json.loads((out / "gpu_train.json").read_text())["runs"]
    assert (train_run["task"], train_run["strategy"], train_run["jit_compile"], train_run["rc"]) == (
        "globe_tsp",
        "default",
        "false",
        0,
    )
    assert train_run["train_seconds"] > 0 and 0 <= train_run["test"]["tour_accuracy"] <= 1
