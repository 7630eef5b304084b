"""Tests of the batched XLA shortest-path solver against scipy's Dijkstra and brute force."""

import collections
import itertools
import zlib

import keras
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph
import tensorflow as tf

from identity_tf.solvers.shortest_path import ShortestPath

MOVES = {
    4: [(-1, 0), (0, -1), (0, 1), (1, 0)],
    8: [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)],
}


def dijkstra_cost(w, neighbourhood):
    """Oracle: optimal path cost, edge u -> v weighted w[v], plus w[source]."""
    h, wd = w.shape
    rows, cols, vals = [], [], []
    for i, j in itertools.product(range(h), range(wd)):
        for di, dj in MOVES[neighbourhood]:
            a, b = i + di, j + dj
            if 0 <= a < h and 0 <= b < wd:
                rows.append(i * wd + j)
                cols.append(a * wd + b)
                vals.append(w[a, b] + 1e-300)  # csgraph drops explicit zeros; 1e-300 keeps zero-cost edges
    graph = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(h * wd, h * wd))
    dist = scipy.sparse.csgraph.dijkstra(graph, directed=True, indices=0)
    return dist[-1] + w[0, 0]


def check_path(path, w, neighbourhood, optimum):
    h, wd = w.shape
    assert set(np.unique(path)) <= {0.0, 1.0}
    assert path[0, 0] == 1 and path[-1, -1] == 1
    np.testing.assert_allclose(np.sum(path * w), optimum, rtol=1e-5, atol=1e-6)
    # the path cells contain a walk from source to target
    seen, queue = {(0, 0)}, collections.deque([(0, 0)])
    while queue:
        i, j = queue.popleft()
        for di, dj in MOVES[neighbourhood]:
            a, b = i + di, j + dj
            if 0 <= a < h and 0 <= b < wd and path[a, b] == 1 and (a, b) not in seen:
                seen.add((a, b))
                queue.append((a, b))
    assert (h - 1, wd - 1) in seen


def random_maps(kind, shape, seed):
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.uniform(0.0, 10.0, shape).astype(np.float32)
    if kind == "zeros":  # many zero-cost cells: plateaus where the walk back must not cycle
        return (rng.uniform(0.0, 5.0, shape) * (rng.uniform(size=shape) < 0.3)).astype(np.float32)
    return rng.integers(0, 4, shape).astype(np.float32)  # integer costs: many ties


@pytest.mark.parametrize("neighbourhood", [4, 8])
@pytest.mark.parametrize("size", [(1, 1), (1, 5), (5, 1), (2, 2), (7, 9), (12, 12)])
@pytest.mark.parametrize("kind", ["uniform", "zeros", "integers"])
def test_matches_dijkstra(neighbourhood, size, kind):
    costs = random_maps(kind, (6, *size), seed=zlib.crc32(repr((neighbourhood, size, kind)).encode()))
    paths = ShortestPath(neighbourhood=neighbourhood)(costs).numpy()
    assert paths.shape == costs.shape and paths.dtype == np.float32
    for path, w in zip(paths, costs):
        check_path(path, w, neighbourhood, dijkstra_cost(w.astype(np.float64), neighbourhood))


def simple_path_costs(w, neighbourhood):
    """Costs of all simple paths from (0, 0) to (H-1, W-1), by depth-first enumeration."""
    h, wd = w.shape
    out = []

    def dfs(cell, visited, cost):
        if cell == (h - 1, wd - 1):
            out.append(cost)
            return
        for di, dj in MOVES[neighbourhood]:
            nxt = (cell[0] + di, cell[1] + dj)
            if 0 <= nxt[0] < h and 0 <= nxt[1] < wd and nxt not in visited:
                dfs(nxt, visited | {nxt}, cost + w[nxt])

    dfs((0, 0), {(0, 0)}, w[0, 0])
    return out


@pytest.mark.parametrize("neighbourhood", [4, 8])
@pytest.mark.parametrize("size", [(2, 3), (3, 3)])
def test_matches_brute_force(neighbourhood, size):
    costs = random_maps("integers", (20, *size), seed=7) + random_maps("uniform", (20, *size), seed=8) * 0.01
    paths = ShortestPath(neighbourhood=neighbourhood)(costs).numpy()
    for path, w in zip(paths, costs):
        check_path(path, w, neighbourhood, min(simple_path_costs(w.astype(np.float64), neighbourhood)))


def test_all_zero_costs_give_simple_path():
    paths = ShortestPath(neighbourhood=4)(tf.zeros([2, 5, 6])).numpy()
    for path in paths:
        check_path(path, np.zeros([5, 6]), 4, 0.0)
        assert path.sum() == 5 + 6 - 1  # the walk back follows the fewest relaxation steps


@pytest.mark.parametrize("neighbourhood", [4, 8])
def test_eager_graph_xla_agree(neighbourhood):
    costs = tf.constant(random_maps("integers", (8, 10, 11), seed=3))
    solver = ShortestPath(neighbourhood=neighbourhood)
    eager = solver(costs)
    graph = tf.function(solver)(costs)
    xla = tf.function(solver, jit_compile=True)(costs)
    np.testing.assert_array_equal(eager.numpy(), graph.numpy())
    np.testing.assert_array_equal(eager.numpy(), xla.numpy())


def test_float16_and_float64_same_path():
    costs = random_maps("integers", (5, 8, 8), seed=4)
    ref = ShortestPath()(costs).numpy()
    half = ShortestPath()(tf.constant(costs, tf.float16))
    double = ShortestPath()(tf.constant(costs, tf.float64))
    assert half.dtype == tf.float16 and double.dtype == tf.float64
    np.testing.assert_array_equal(half.numpy().astype(np.float32), ref)
    np.testing.assert_array_equal(double.numpy().astype(np.float32), ref)


@pytest.mark.parametrize("neighbourhood", [4, 8])
@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_costs_near_the_float32_maximum_are_solved_exactly(neighbourhood, mode):
    rng = np.random.default_rng(7)
    huge = (rng.uniform(0.1, 1.0, (6, 12, 12)) * np.finfo(np.float32).max).astype(np.float32)
    normal = rng.uniform(0.0, 10.0, (2, 12, 12)).astype(np.float32)
    costs = np.concatenate([huge, normal])  # a batch mixing both
    solver = ShortestPath(neighbourhood=neighbourhood)
    solve = solver if mode == "eager" else tf.function(solver, jit_compile=True)
    paths = solve(tf.constant(costs)).numpy()
    for path, w in zip(paths, costs.astype(np.float64)):  # the oracle sums in float64: no overflow
        check_path(path, w, neighbourhood, dijkstra_cost(w, neighbourhood))
    # the maps with ordinary costs are solved bit for bit as on their own
    np.testing.assert_array_equal(paths[6:], solve(tf.constant(normal)).numpy())


def test_float64_costs_near_the_float64_maximum():
    rng = np.random.default_rng(8)
    costs = rng.uniform(0.1, 0.99, (3, 9, 9)) * np.finfo(np.float64).max
    paths = ShortestPath()(tf.constant(costs)).numpy()
    for path, w in zip(paths, costs * 2.0**-1000):  # the oracle on exactly scaled costs (sums stay finite)
        check_path(path, w, 8, dijkstra_cost(w, 8))


def test_negative_zero_is_canonicalised():
    costs = -np.zeros([1, 3, 3], np.float32)
    np.testing.assert_array_equal(
        ShortestPath()(costs).numpy(), ShortestPath()(np.zeros([1, 3, 3], np.float32)).numpy()
    )


def test_bad_values():
    costs = np.ones([2, 3, 3], np.float32)
    nan = costs.copy()
    nan[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        ShortestPath()(nan)
    neg = costs.copy()
    neg[0, 2, 1] = -1.0
    with pytest.raises(ValueError, match="costs >= 0"):
        ShortestPath()(neg)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.function(ShortestPath())(tf.constant(neg))
    ShortestPath(validate_args=False)(neg)  # no check, no error


def test_bad_shapes_and_arguments():
    with pytest.raises(ValueError, match=r"costs.*Received: costs.shape"):
        ShortestPath()(np.ones([3, 3], np.float32))
    with pytest.raises(ValueError, match=r"Received: costs.shape"):
        ShortestPath()(np.ones([2, 3, 3, 1], np.float32))
    with pytest.raises(ValueError, match=r"Received: costs.shape"):
        ShortestPath()(np.ones([2, 0, 3], np.float32))
    with pytest.raises(ValueError, match=r"Received: neighbourhood=6"):
        ShortestPath(neighbourhood=6)
    with pytest.raises(ValueError, match=r"max_iterations"):
        ShortestPath(max_iterations=0)


def test_project_to_domain():
    out = ShortestPath().project_to_domain(tf.constant([[[-1.0, 2.0]]]))
    np.testing.assert_array_equal(out.numpy(), [[[0.0, 2.0]]])


def test_config_round_trips():
    solver = ShortestPath(neighbourhood=4, max_iterations=50, validate_args=False, name="sp")
    config = solver.get_config()
    assert config == {"validate_args": False, "name": "sp", "neighbourhood": 4, "max_iterations": 50}
    clone = ShortestPath.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(solver))
    assert isinstance(restored, ShortestPath) and restored.get_config() == config


def test_doctest():
    import doctest

    import identity_tf.solvers.shortest_path as module

    assert doctest.testmod(module).failed == 0
