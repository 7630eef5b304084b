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

from identity_tf.solvers import _held_karp, _lkh, _tsp_host
from identity_tf.solvers import tsp as tsp_module
from identity_tf.solvers.tsp import TSP

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
METHODS = ["dp", "cp_sat", "milp", "lkh"]


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
    last_dp = tsp_module.AUTO_DP_MAX_CITIES
    assert solver.xla and solver.resolve_method(last_dp) == "dp" and solver.resolve_method(last_dp + 1) == "cp_sat"
    d = euclidean(np.random.default_rng(5), 2, last_dp + 1)
    lengths = tour_lengths(d, solver(d).numpy())
    np.testing.assert_allclose(lengths, tour_lengths(d, TSP(method="milp")(d).numpy()), rtol=1e-5)


def test_xla_property_is_truthful_with_num_cities():
    last_dp = tsp_module.AUTO_DP_MAX_CITIES
    assert TSP(num_cities=last_dp).xla and not TSP(num_cities=last_dp + 1).xla
    assert TSP(method="dp").xla and not TSP(method="lkh").xla and not TSP(method="cp_sat", num_cities=5).xla
    with pytest.raises(ValueError, match="num_cities=6"):
        TSP(num_cities=6)(np.ones((1, 5, 5), np.float32))


def test_host_method_under_xla_raises_a_clear_error():
    """Not TensorFlow's raw PyFuncStateless compile error: the message names the method and the way out."""
    d = tf.constant(euclidean(np.random.default_rng(9), 2, 6))
    with pytest.raises(ValueError, match="XLA cannot compile"):
        tf.function(TSP(method="cp_sat"), jit_compile=True)(d)
    k = tsp_module.AUTO_DP_MAX_CITIES + 1
    big = tf.constant(euclidean(np.random.default_rng(9), 1, k))
    with pytest.raises(ValueError, match=f"pass num_cities={k}"):
        tf.function(TSP(), jit_compile=True)(big)
    # a Keras model with that solver and jit_compile="auto" is not compiled, so fit runs
    layer = itf_layers().SolverLayer(TSP(num_cities=k))
    inputs = keras.Input((k, k))
    model = keras.Model(inputs, layer(inputs))
    model.compile(loss="mae", jit_compile="auto")
    assert model.jit_compile is False
    model.fit(big, big, epochs=1, verbose=0)


def itf_layers():
    from identity_tf import layers

    return layers


# ----------------------------------------------------------------------------------------------- LKH
def sphere(rng, batch, k):
    """Great-circle distances between random points of the unit sphere (as in Globe TSP), float64."""
    p = rng.normal(size=(batch, k, 3))
    p /= np.linalg.norm(p, axis=-1, keepdims=True)
    return np.arccos(np.clip(np.einsum("bid,bjd->bij", p, p), -1.0, 1.0)) * (1 - np.eye(k))


@pytest.mark.parametrize("k", [13, 16])
def test_lkh_float_distances_give_the_exact_optimum(k):
    """Float distances are scaled to integers for LKH: the tours are the exact optima of dp / CP-SAT."""
    d = sphere(np.random.default_rng(k), 12, k)
    exact = TSP(method="dp" if k <= 15 else "cp_sat").solve_batch(d)
    lkh = TSP(method="lkh", num_workers=1).solve_batch(d)
    for adjacency in lkh:
        assert_single_tour(adjacency)
    np.testing.assert_allclose(tour_lengths(d, lkh), tour_lengths(d, exact), rtol=1e-6)


def test_lkh_is_deterministic_across_workers_seeds_and_modes():
    d = sphere(np.random.default_rng(2), 10, 25).astype(np.float32)
    one = TSP(method="lkh", num_workers=1).solve_batch(d)
    assert one.dtype == np.float32
    two = TSP(method="lkh", num_workers=2).solve_batch(d)  # worker processes
    again = TSP(method="lkh", num_workers=2).solve_batch(d[::-1])[::-1]
    graph = tf.function(TSP(method="lkh", num_workers=2), input_signature=[tf.TensorSpec([None, 25, 25])])
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, again)
    np.testing.assert_array_equal(one, graph(tf.constant(d)).numpy())
    np.testing.assert_array_equal(one, TSP(method="lkh", num_workers=1, time_limit=60.0).solve_batch(d))
    np.testing.assert_allclose(
        tour_lengths(d, TSP(method="lkh", seed=7).solve_batch(d)), tour_lengths(d, one), rtol=1e-6
    )


def test_lkh_worker_processes_restart_after_a_crash():
    d = sphere(np.random.default_rng(4), 6, 12)
    expected = TSP(method="lkh", num_workers=1).solve_batch(d)
    TSP(method="lkh", num_workers=2).solve_batch(d)
    pool = _lkh._the_pool
    pool.workers[0].kill()
    pool.workers[0].wait()
    np.testing.assert_array_equal(TSP(method="lkh", num_workers=2).solve_batch(d), expected)
    assert _lkh._the_pool is not pool


def test_lkh_without_elkai_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "elkai", None)  # makes `import elkai` raise ImportError
    with pytest.raises(ImportError, match="pip install elkai"):
        TSP(method="lkh", num_workers=1).solve_batch(euclidean(np.random.default_rng(0), 1, 5))


def test_integer_weights_keep_the_optimal_tours():
    d = np.array([[0.0, 2.5, -1.0, 4.0], [2.5, 0.0, 3.0, 1.0], [-1.0, 3.0, 0.0, 2.0], [4.0, 1.0, 2.0, 0.0]])
    w = _lkh.integer_weights(d)
    off = ~np.eye(4, dtype=bool)
    assert w[off].min() == 0 and w[off].max() == _lkh.INTEGER_SCALE and np.all(np.diag(w) == 0)
    # shift by -(-1) and scale by 1e6 / 5 exactly: w = (d + 1) * 2e5
    np.testing.assert_array_equal(w[off], ((d + 1.0) * 2e5)[off])


# ------------------------------------------------------------------------------- costs of any magnitude
@pytest.mark.parametrize("method", ["cp_sat", "milp", "lkh"])
def test_huge_tiny_and_offset_costs_give_the_optimum(method):
    """HiGHS failed on 1e30 ("model_status is Unknown") and was not optimal on 1e-12 before normalisation."""
    d = euclidean(np.random.default_rng(11), 3, 8, np.float64)
    shortest = [brute_force_length(x) for x in d]
    longest = [-brute_force_length(-x) for x in d]
    cases = {"1e30": (d * 1e30, shortest), "1e-12": (d * 1e-12, shortest), "1e300": (d * 1e300, shortest)}
    cases.update({"offset": (d + 1e6, shortest), "negated": (-d, longest)})
    for name, (costs, expected) in cases.items():
        a = TSP(method=method).solve_batch(costs)
        np.testing.assert_allclose(tour_lengths(d, a), expected, rtol=1e-6, err_msg=name)


def test_normalized_distances_example_values():
    d = np.array([[5.0, 1.0, 3.0], [1.0, 7.0, 2.0], [3.0, 2.0, 9.0]])
    np.testing.assert_allclose(_tsp_host.normalized_distances(d), [[0.0, 0.0, 1.0], [0.0, 0.0, 0.5], [1.0, 0.5, 0.0]])
    np.testing.assert_array_equal(_tsp_host.normalized_distances(np.ones((4, 4))), np.zeros((4, 4)))
    np.testing.assert_allclose(
        _tsp_host.normalized_distances(d * 1.9e307), _tsp_host.normalized_distances(d), rtol=1e-12
    )


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
    for seed in (0, -3, True, 1.5):
        with pytest.raises(ValueError, match=f"seed={seed!r}"):
            TSP(method="lkh", seed=seed)
    for num_cities in (2, 4.0, False):
        with pytest.raises(ValueError, match=f"num_cities={num_cities!r}"):
            TSP(num_cities=num_cities)
    with pytest.raises(ValueError, match=r"k >= 3"):
        TSP(method="lkh").solve_batch(np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        TSP(method="lkh").solve_batch(np.full((1, 4, 4), np.nan))
    with pytest.raises(ValueError, match="static number of cities"):
        tf.function(TSP(method="dp"), input_signature=[tf.TensorSpec([None, None, None])]).get_concrete_function()


def test_config_round_trip():
    solver = TSP(method="milp", num_workers=3, time_limit=5.0, seed=4, num_cities=9, validate_args=False, name="tour")
    config = keras.saving.serialize_keras_object(solver)
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, TSP)
    assert restored.get_config() == solver.get_config()
    assert restored.get_config()["method"] == "milp" and restored.num_workers == 3 and restored.time_limit == 5.0
    assert (restored.seed, restored.num_cities) == (4, 9)


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
