"""Tests of the TSP solver: every method against brute force, against each other, modes, validation."""

import itertools
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from identity_tf.solvers import _held_karp
from identity_tf.solvers.tsp import TSP

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
METHODS = ["dp", "cp_sat", "milp"]


# ---------------------------------------------------------------------------------------------- helpers
def euclidean(rng, batch, k, dtype=np.float32):
    points = rng.random((batch, k, 2))
    # [B, k, 1, 2] - [B, 1, k, 2] -> [B, k, k]
    return np.linalg.norm(points[:, :, None] - points[:, None], axis=-1).astype(dtype)


def integer_with_ties(rng, batch, k, dtype=np.float32):
    d = rng.integers(1, 4, size=(batch, k, k)).astype(dtype)  # few values: many optimal tours
    d = np.triu(d, 1)
    return d + np.transpose(d, (0, 2, 1))


def brute_force_length(d):
    """Shortest tour length by enumerating all tours that start at city 0."""
    k = len(d)
    tours = np.array([(0, *p) for p in itertools.permutations(range(1, k))])  # [(k-1)!, k]
    lengths = d[tours, np.roll(tours, -1, axis=1)].sum(axis=1)  # [(k-1)!]
    return lengths.min()


def assert_single_tour(adjacency):
    """0/1, symmetric, degree 2 everywhere and one Hamiltonian cycle."""
    a = np.asarray(adjacency)
    k = a.shape[-1]
    assert set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, a.T)
    np.testing.assert_array_equal(a.sum(axis=1), np.full(k, 2.0))
    previous, current, seen = None, 0, {0}
    for _ in range(k - 1):
        step = next(j for j in np.flatnonzero(a[current]) if j != previous)
        previous, current = current, int(step)
        seen.add(current)
    assert len(seen) == k and a[current, 0] == 1  # visited every city and closed back at city 0


def tour_lengths(d, adjacency):
    return (np.asarray(d, np.float64) * np.asarray(adjacency, np.float64)).sum(axis=(1, 2)) / 2


# --------------------------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", range(3, 9))
@pytest.mark.parametrize("kind", ["euclidean", "integer_ties"])
def test_matches_brute_force(method, k, kind):
    rng = np.random.default_rng(1000 * k + len(kind))
    make = euclidean if kind == "euclidean" else integer_with_ties
    d = make(rng, 6, k)
    a = TSP(method=method)(d).numpy()
    assert a.shape == d.shape and a.dtype == d.dtype
    for adjacency in a:
        assert_single_tour(adjacency)
    np.testing.assert_allclose(tour_lengths(d, a), [brute_force_length(x) for x in d], rtol=1e-5)


@pytest.mark.parametrize("k", [10, 11, 12])
def test_methods_agree_on_larger_instances(k):
    rng = np.random.default_rng(k)
    d = np.concatenate([euclidean(rng, 3, k, np.float64), integer_with_ties(rng, 2, k, np.float64)])
    lengths = {}
    for method in METHODS:
        a = TSP(method=method)(d).numpy()
        for adjacency in a:
            assert_single_tour(adjacency)
        lengths[method] = tour_lengths(d, a)
    np.testing.assert_allclose(lengths["cp_sat"], lengths["dp"], rtol=1e-5)
    np.testing.assert_allclose(lengths["milp"], lengths["dp"], rtol=1e-5)


def test_dp_eager_graph_and_xla_agree():
    rng = np.random.default_rng(7)
    d = tf.constant(euclidean(rng, 8, 9))
    solver = TSP(method="dp")
    assert solver.xla
    eager = solver(d)
    graph = tf.function(solver)(d)
    xla = tf.function(solver, jit_compile=True)(d)
    dynamic_batch = tf.function(solver, input_signature=[tf.TensorSpec([None, 9, 9], tf.float32)])(d)
    for other in (graph, xla, dynamic_batch):
        np.testing.assert_array_equal(eager.numpy(), other.numpy())


def test_dp_float64_negative_zero_and_solve_batch():
    d = integer_with_ties(np.random.default_rng(3), 4, 6, np.float64)
    d[:, 0, 1] = d[:, 1, 0] = 0.0
    d[:, 2, 3] = d[:, 3, 2] = -0.0
    solver = TSP(method="dp")
    a = solver(d)
    assert a.dtype == tf.float64
    np.testing.assert_array_equal(a.numpy(), solver(d + 0.0).numpy())
    np.testing.assert_array_equal(solver.solve_batch(d), a.numpy())


def test_host_methods_in_graph_mode():
    d = euclidean(np.random.default_rng(4), 5, 9)
    expected = [brute_force_length(x) for x in d]
    for method in ("cp_sat", "milp"):
        solver = TSP(method=method, num_workers=2, time_limit=30.0)
        assert not solver.xla
        fn = tf.function(solver, input_signature=[tf.TensorSpec([None, 9, 9], tf.float32)])
        a = fn(tf.constant(d)).numpy()
        np.testing.assert_allclose(tour_lengths(d, a), expected, rtol=1e-5)


def test_auto_resolves_on_k():
    solver = TSP()
    assert solver.xla and solver.resolve_method(12) == "dp" and solver.resolve_method(13) == "cp_sat"
    d = euclidean(np.random.default_rng(5), 2, 13)
    lengths = tour_lengths(d, solver(d).numpy())
    np.testing.assert_allclose(lengths, tour_lengths(d, TSP(method="dp")(d).numpy()), rtol=1e-5)


def test_cp_sat_after_tensorflow_in_subprocess():
    """CP-SAT segfaults when TensorFlow was imported first unless loaded via `_ortools.cp_model()`."""
    script = (
        "import tensorflow as tf\n"
        "import numpy as np\n"
        "import identity_tf\n"
        "rng = np.random.default_rng(0)\n"
        "points = rng.random((4, 15, 2))\n"
        "d = np.linalg.norm(points[:, :, None] - points[:, None], axis=-1).astype(np.float32)\n"
        "a = tf.function(identity_tf.solvers.TSP(method='cp_sat', num_workers=2))(tf.constant(d)).numpy()\n"
        "assert a.shape == (4, 15, 15) and (a.sum(axis=2) == 2).all()\n"
        "print('ok')\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout


# ------------------------------------------------------------------------------------------ validation
def test_non_symmetric_raises():
    d = euclidean(np.random.default_rng(6), 3, 5)
    d[1, 0, 2] += 0.5
    for method in ("dp", "cp_sat", "milp"):
        with pytest.raises(ValueError, match="symmetric `costs`"):
            TSP(method=method)(d)
    with pytest.raises(ValueError, match="instance 1"):
        TSP(method="cp_sat").solve_batch(d)
    with pytest.raises(tf.errors.InvalidArgumentError, match="symmetric"):
        tf.function(TSP(method="dp"))(tf.constant(d))
    # tiny asymmetry (relative 1e-7) is accepted
    d = euclidean(np.random.default_rng(6), 2, 5, np.float64)
    d[0, 0, 2] *= 1 + 1e-7
    TSP(method="dp")(d)
    TSP(method="cp_sat")(d)


@pytest.mark.parametrize("method", ["dp", "cp_sat"])
def test_nan_raises(method):
    d = euclidean(np.random.default_rng(8), 2, 5)
    d[1, 2, 3] = d[1, 3, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        TSP(method=method)(d)


def test_bad_shapes_and_arguments():
    with pytest.raises(ValueError, match="k >= 3"):
        TSP(method="dp")(np.ones((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="k >= 3"):
        TSP(method="cp_sat")(np.ones((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"\[B, k, k\]"):
        TSP()(np.ones((1, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"\[B, k, k\]"):
        TSP()(np.ones((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="rank"):
        TSP()(np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="cp_sat"):
        TSP(method="dp")(np.ones((1, 16, 16), np.float32))
    with pytest.raises(ValueError, match="'auto', 'dp', 'cp_sat', 'milp'"):
        TSP(method="foo")
    with pytest.raises(ValueError, match="time_limit"):
        TSP(time_limit=-1.0)
    with pytest.raises(ValueError, match="num_workers"):
        TSP(num_workers=0)
    with pytest.raises(ValueError, match="static number of cities"):
        tf.function(TSP(method="dp"), input_signature=[tf.TensorSpec([None, None, None])]).get_concrete_function()


def test_config_round_trip():
    solver = TSP(method="milp", num_workers=3, time_limit=5.0, validate_args=False, name="tour")
    config = keras.saving.serialize_keras_object(solver)
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, TSP)
    assert restored.get_config() == solver.get_config()
    assert restored.get_config()["method"] == "milp" and restored.num_workers == 3 and restored.time_limit == 5.0


def test_project_to_domain_symmetrises():
    costs = tf.random.stateless_normal([3, 5, 5], seed=[1, 2])
    projected = TSP().project_to_domain(costs).numpy()
    np.testing.assert_allclose(projected, np.transpose(projected, (0, 2, 1)))
    np.testing.assert_allclose(projected, 0.5 * (costs.numpy() + np.transpose(costs.numpy(), (0, 2, 1))))


def test_held_karp_tables_sizes():
    t = _held_karp.tables(6)
    m = 5
    assert sum(len(n) for n in t.node) == m * 2 ** (m - 1)  # states (S, j), j in S
    for p in range(2, m + 1):
        assert t.pred[p - 1].shape == (len(t.node[p - 1]), p - 1)
