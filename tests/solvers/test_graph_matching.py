"""GraphMatching: both methods against brute-force enumeration, padding, the induced edge matching, modes,
validation, config, and a comparison with pygmtools' RRWM / IPFP."""

import itertools

import keras
import numpy as np
import pytest
import scipy.optimize
import scipy.spatial
import tensorflow as tf

import identity_tf as itf
from identity_tf.solvers import _qap_milp

METHODS = ["ils", "milp"]


# ---------------------------------------------------------------------------------------------- helpers
def random_edges(rng, n, density=0.5):
    """Random directed edges without self-loops, ``[E, 2]``."""
    edges = [(i, k) for i in range(n) for k in range(n) if i != k and rng.random() < density]
    return np.array(edges, dtype=np.int32).reshape(-1, 2)


def delaunay_edges(points):
    """Both directions of every Delaunay edge, ``[E, 2]``."""
    edges = set()
    for simplex in scipy.spatial.Delaunay(points).simplices:
        for a in range(3):
            i, k = int(simplex[a]), int(simplex[(a + 1) % 3])
            edges |= {(i, k), (k, i)}
    return np.array(sorted(edges), dtype=np.int32)


def informative_instance(rng, n, noise=0.3):
    """Trained-like costs: a hidden permutation on Delaunay graphs of random points, noisy affinities."""
    points = rng.random((n, 2))
    perm = rng.permutation(n)  # node i of graph 1 <-> node perm[i] of graph 2
    points2 = np.empty_like(points)
    points2[perm] = points + 0.02 * rng.normal(size=points.shape)
    edges1, edges2 = delaunay_edges(points), delaunay_edges(points2)
    truth = np.zeros((n, n))
    truth[np.arange(n), perm] = 1
    edge_truth = (perm[edges1[:, 0]][:, None] == edges2[None, :, 0]) & (
        perm[edges1[:, 1]][:, None] == edges2[None, :, 1]
    )
    unary = -(truth + noise * rng.normal(size=(n, n)))
    pairwise = -0.5 * (edge_truth + noise * rng.normal(size=edge_truth.shape))
    return unary, pairwise, edges1, edges2


def random_instance(rng, n, m, integer=False):
    edges1, edges2 = random_edges(rng, n), random_edges(rng, m)
    unary = rng.normal(size=(n, m))
    pairwise = rng.normal(size=(len(edges1), len(edges2)))
    if integer:  # few distinct values: many optimal matchings
        unary, pairwise = np.round(unary), np.round(pairwise)
    return unary, pairwise, edges1, edges2


def objective(unary, pairwise, edges1, edges2, x):
    """``<unary, x> + sum_{e, f} pairwise[e, f] x[i, j] x[k, l]`` by explicit loops (the definition)."""
    value = float(np.sum(unary * x))
    for e, (i, k) in enumerate(edges1):
        if i < 0:
            continue
        for f, (j, q) in enumerate(edges2):  # f = (j, q): x[i, j] = x[k, q] = 1 pays pairwise[e, f]
            if j >= 0:
                value += pairwise[e, f] * x[i, j] * x[k, q]
    return value


def all_matchings(n, m, partial):
    """Every feasible matching ``[K, n]`` as the partner of each row (-1: unmatched)."""
    if partial:
        rows = [
            a
            for a in itertools.product(range(-1, m), repeat=n)
            if len({c for c in a if c >= 0}) == sum(c >= 0 for c in a)
        ]
        return np.array(rows, dtype=np.int64).reshape(-1, n)
    if n <= m:
        return np.array(list(itertools.permutations(range(m), n)), dtype=np.int64).reshape(-1, n)
    out = []  # every column matched: choose the m rows and their order
    for rows in itertools.permutations(range(n), m):
        partner = -np.ones(n, np.int64)
        partner[list(rows)] = np.arange(m)
        out.append(partner)
    return np.array(out)


def brute_force(unary, pairwise, edges1, edges2, partial=False):
    """Optimal value over all matchings, vectorised over them: ``U[i, pi(i)]`` plus the edge pairs
    ``(i, k) -> (j, l)`` with ``pi(i) = j`` and ``pi(k) = l``."""
    n, m = unary.shape
    partners = all_matchings(n, m, partial)  # [K, n]
    padded = np.concatenate([unary, np.zeros((n, 1))], axis=1)  # unmatched (-1 -> column m) costs 0
    values = padded[np.arange(n), partners].sum(axis=1)
    if len(edges1) and len(edges2):
        tails, heads = partners[:, edges1[:, 0]], partners[:, edges1[:, 1]]  # [K, E1]
        hit = (tails[:, :, None] == edges2[None, None, :, 0]) & (heads[:, :, None] == edges2[None, None, :, 1])
        values = values + np.einsum("kef,ef->k", hit, pairwise)
    return float(values.min())


def batch(instances, n=None, m=None, E1=None, E2=None, fill=0.0):
    """Pads instances into one batch; padded costs get ``fill``; returns the 6-tuple of inputs."""
    n = n or max(u.shape[0] for u, *_ in instances)
    m = m or max(u.shape[1] for u, *_ in instances)
    E1 = E1 or max(len(e) for _, _, e, _ in instances)
    E2 = E2 or max(len(e) for *_, e in instances)
    B = len(instances)
    unary, pairwise = np.full((B, n, m), fill), np.full((B, E1, E2), fill)
    edges1, edges2 = -np.ones((B, E1, 2), np.int32), -np.ones((B, E2, 2), np.int32)
    for b, (u, p, e1, e2) in enumerate(instances):
        unary[b, : u.shape[0], : u.shape[1]] = u
        pairwise[b, : len(e1), : len(e2)] = p
        edges1[b, : len(e1)], edges2[b, : len(e2)] = e1, e2
    counts1 = np.array([u.shape[0] for u, *_ in instances], np.int32)
    counts2 = np.array([u.shape[1] for u, *_ in instances], np.int32)
    return unary.astype(np.float32), pairwise.astype(np.float32), edges1, edges2, counts1, counts2


def assert_matching(x, n, m, partial):
    """0/1, at most one 1 per row and column, and (perfect mode) min(n, m) ones; nothing outside n x m."""
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert np.all(x.sum(axis=0) <= 1) and np.all(x.sum(axis=1) <= 1)
    assert x[n:].sum() == 0 and x[:, m:].sum() == 0
    if not partial:
        assert x.sum() == min(n, m)


def values_of(inputs, x):
    unary, pairwise, edges1, edges2, counts1, counts2 = inputs
    return [
        objective(
            unary[b, : counts1[b], : counts2[b]].astype(np.float64),
            pairwise[b],
            edges1[b],
            edges2[b],
            x[b, : counts1[b], : counts2[b]],
        )
        for b in range(len(unary))
    ]


# --------------------------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("n", range(2, 8))
def test_milp_matches_brute_force_perfect(n):
    rng = np.random.default_rng(n)
    instances = [random_instance(rng, n, n, integer=(b % 2 == 1)) for b in range(3)]
    inputs = batch(instances)
    x, z = itf.solvers.GraphMatching(method="milp")(inputs[:4])
    x = x.numpy()
    for b in range(len(instances)):
        assert_matching(x[b], n, n, partial=False)
    np.testing.assert_allclose(values_of(inputs, x), [brute_force(*i) for i in instances], atol=1e-4)


@pytest.mark.parametrize("n, m", [(2, 4), (3, 5), (5, 3), (4, 2)])
@pytest.mark.parametrize("method", METHODS)
def test_rectangular_perfect_matches_every_node_of_the_smaller_graph(n, m, method):
    rng = np.random.default_rng(10 * n + m)
    instances = [random_instance(rng, n, m) for _ in range(3)]
    inputs = batch(instances)
    x = itf.solvers.GraphMatching(method=method)(inputs[:4])[0].numpy()
    for b in range(len(instances)):
        assert_matching(x[b], n, m, partial=False)
    if method == "milp":
        np.testing.assert_allclose(values_of(inputs, x), [brute_force(*i) for i in instances], atol=1e-4)


@pytest.mark.parametrize("n, m", [(1, 1), (2, 3), (3, 3), (4, 3), (4, 5), (5, 5)])
def test_milp_partial_matches_brute_force_over_all_partial_matchings(n, m):
    rng = np.random.default_rng(100 + 10 * n + m)
    instances = [random_instance(rng, n, m, integer=(b == 2)) for b in range(3)]
    inputs = batch(instances)
    x = itf.solvers.GraphMatching(method="milp", partial=True)(inputs[:4])[0].numpy()
    for b in range(len(instances)):
        assert_matching(x[b], n, m, partial=True)
    expected = [brute_force(*i, partial=True) for i in instances]
    np.testing.assert_allclose(values_of(inputs, x), expected, atol=1e-4)
    # partial mode may only be better than perfect mode
    assert all(e <= brute_force(*i) + 1e-9 for e, i in zip(expected, instances))


@pytest.mark.parametrize("n", [5, 6, 7])
@pytest.mark.parametrize("partial", [False, True])
def test_ils_reaches_the_optimum_on_informative_instances(n, partial):
    rng = np.random.default_rng(200 + n)
    instances = [informative_instance(rng, n) for _ in range(4)]
    inputs = batch(instances)
    x = itf.solvers.GraphMatching(method="ils", partial=partial)(inputs[:4])[0].numpy()
    if partial and n > 5:  # all partial matchings of 7 nodes are too many to enumerate: MILP is the oracle
        expected = values_of(inputs, itf.solvers.GraphMatching(method="milp", partial=True)(inputs[:4])[0].numpy())
    else:
        expected = [brute_force(*i, partial=partial) for i in instances]
    np.testing.assert_allclose(values_of(inputs, x), expected, atol=1e-4)


@pytest.mark.parametrize("n", [4, 6])
def test_ils_optimal_on_small_random_instances_mostly(n):
    """Heuristic on near-random costs: reaches the brute-force optimum on most small instances, never below."""
    rng = np.random.default_rng(300 + n)
    instances = [random_instance(rng, n, n) for _ in range(8)]
    inputs = batch(instances)
    values = values_of(inputs, itf.solvers.GraphMatching(method="ils")(inputs[:4])[0].numpy())
    optima = [brute_force(*i) for i in instances]
    assert np.all(np.array(values) >= np.array(optima) - 1e-4)
    assert np.mean(np.isclose(values, optima, atol=1e-4)) >= 0.75


@pytest.mark.parametrize("kind", ["random", "informative"])
@pytest.mark.parametrize("partial", [False, True])
def test_ils_never_worse_than_the_hungarian_start(kind, partial):
    rng = np.random.default_rng(7)
    n = 12
    make = (
        (lambda: random_instance(rng, n, n)) if kind == "random" else (lambda: informative_instance(rng, n, noise=0.8))
    )
    instances = [make() for _ in range(6)]
    inputs = batch(instances)
    x = itf.solvers.GraphMatching(method="ils", partial=partial, num_kicks=4)(inputs[:4])[0].numpy()
    for b, (unary, pairwise, edges1, edges2) in enumerate(instances):
        costs = np.minimum(unary, 0.0) if partial else unary  # partial: only pairs of negative cost help
        rows, cols = scipy.optimize.linear_sum_assignment(costs)
        start = np.zeros((n, n))
        start[rows, cols] = 1.0
        if partial:
            start *= unary < 0
        assert (
            objective(unary, pairwise, edges1, edges2, x[b]) <= objective(unary, pairwise, edges1, edges2, start) + 1e-6
        )


# -------------------------------------------------------------------------------- z, padding, modes
@pytest.mark.parametrize("method", METHODS)
def test_induced_edge_matching_is_consistent_with_x(method):
    rng = np.random.default_rng(11)
    inputs = batch([informative_instance(rng, 6), random_instance(rng, 4, 5), random_instance(rng, 5, 3)])
    x, z = (t.numpy() for t in itf.solvers.GraphMatching(method=method)(inputs))
    _, _, edges1, edges2, *_ = inputs
    expected = np.zeros(z.shape)
    for b in range(len(x)):
        for e, (i, k) in enumerate(edges1[b]):
            for f, (j, q) in enumerate(edges2[b]):
                if i >= 0 and j >= 0:
                    expected[b, e, f] = x[b, i, j] * x[b, k, q]
    np.testing.assert_array_equal(z, expected)
    np.testing.assert_array_equal(itf.solvers.induced_edge_matching(x, edges1, edges2).numpy(), expected)
    # the objective is linear in (x, z): <unary, x> + <pairwise, z> equals the definition
    unary, pairwise = inputs[:2]
    np.testing.assert_allclose((unary * x).sum((1, 2)) + (pairwise * z).sum((1, 2)), values_of(inputs, x), rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("partial", [False, True])
def test_padding_never_changes_the_real_part(method, partial):
    rng = np.random.default_rng(12)
    instances = [
        informative_instance(rng, 4),
        random_instance(rng, 3, 5),
        informative_instance(rng, 6),
        random_instance(rng, 5, 4),
    ]
    solver = itf.solvers.GraphMatching(method=method, partial=partial)
    zeros = batch(instances, n=7, m=8, E1=40, E2=40, fill=0.0)
    garbage = batch(instances, n=7, m=8, E1=40, E2=40, fill=-50.0)  # very attractive padded costs
    x0, z0 = (t.numpy() for t in solver(zeros))
    x1, z1 = (t.numpy() for t in solver(garbage))
    np.testing.assert_array_equal(x0, x1)
    np.testing.assert_array_equal(z0, z1)
    for b, (unary, pairwise, edges1, edges2) in enumerate(instances):
        n, m = unary.shape
        assert_matching(x0[b], n, m, partial)
        assert z0[b, len(edges1) :].sum() == 0 and z0[b, :, len(edges2) :].sum() == 0
        alone = solver(batch([instances[b]])[:4])[0].numpy()[0]  # unpadded, on its own
        if method == "milp" or not partial:  # equal optimal values (milp exact; ils finds these)
            assert objective(unary, pairwise, edges1, edges2, x0[b, :n, :m]) == pytest.approx(
                objective(unary, pairwise, edges1, edges2, alone), abs=1e-4
            )


def test_counts_default_to_all_nodes_and_4_or_6_inputs_agree():
    rng = np.random.default_rng(13)
    inputs = batch([informative_instance(rng, 5), informative_instance(rng, 5)])
    solver = itf.solvers.GraphMatching()
    four, six = solver(inputs[:4]), solver(inputs)
    for a, b in zip(four, six):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("method", METHODS)
def test_eager_and_tf_function_agree_and_dtypes(method):
    rng = np.random.default_rng(14)
    inputs = batch([informative_instance(rng, 5), random_instance(rng, 4, 4)])
    solver = itf.solvers.GraphMatching(method=method)
    eager = solver(inputs)
    graph = tf.function(solver)(tuple(tf.constant(t) for t in inputs))
    assert graph[0].shape == inputs[0].shape and graph[1].shape == inputs[1].shape
    for a, b in zip(eager, graph):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    double = solver((inputs[0].astype(np.float64), inputs[1].astype(np.float64), *inputs[2:]))
    assert double[0].dtype == tf.float64 and double[1].dtype == tf.float64
    np.testing.assert_array_equal(double[0].numpy(), eager[0].numpy())


def test_unknown_batch_size_in_a_graph():
    rng = np.random.default_rng(15)
    inputs = batch([informative_instance(rng, 5), informative_instance(rng, 5)])
    spec = tuple(tf.TensorSpec([None, *t.shape[1:]], t.dtype) for t in inputs)
    fn = tf.function(itf.solvers.GraphMatching(), input_signature=[spec])
    x, z = fn(tuple(tf.constant(t) for t in inputs))
    assert fn.get_concrete_function().structured_outputs[0].shape.as_list() == [None, 5, 5]
    np.testing.assert_array_equal(x.numpy(), itf.solvers.GraphMatching()(inputs)[0].numpy())


def test_ils_is_deterministic_for_a_seed():
    rng = np.random.default_rng(16)
    inputs = batch([random_instance(rng, 9, 9) for _ in range(4)])
    first = itf.solvers.GraphMatching(seed=3)(inputs)[0].numpy()
    np.testing.assert_array_equal(itf.solvers.GraphMatching(seed=3)(inputs)[0].numpy(), first)
    unseeded = itf.solvers.GraphMatching(seed=None)(inputs)[0].numpy()  # random kicks, still a matching
    for x in unseeded:
        assert_matching(x, 9, 9, partial=False)


def test_empty_graphs_reduce_to_linear_assignment():
    rng = np.random.default_rng(17)
    unary = rng.normal(size=(3, 5, 5)).astype(np.float32)
    no_edges = np.zeros((3, 0, 2), np.int32)
    for method in METHODS:
        x, z = itf.solvers.GraphMatching(method=method)((unary, np.zeros((3, 0, 0), np.float32), no_edges, no_edges))
        np.testing.assert_array_equal(x.numpy(), itf.solvers.LinearAssignment()(unary).numpy())
        assert z.shape == (3, 0, 0)


def test_milp_time_limit_returns_a_matching_and_warns():
    rng = np.random.default_rng(18)
    instance = random_instance(rng, 12, 12)  # near-random costs: HiGHS needs far more than 0.01 s
    with pytest.warns(_qap_milp.TimeLimitWarning, match="instance 0"):
        x = itf.solvers.GraphMatching(method="milp", time_limit=0.01)(batch([instance])[:4])[0].numpy()
    assert_matching(x[0], 12, 12, partial=False)


def test_attributes_and_config_round_trip():
    solver = itf.solvers.GraphMatching(method="milp", partial=True, time_limit=3.0, num_kicks=7, seed=5, num_workers=2)
    assert solver.sense == "min" and solver.xla is False and solver.on_hyperplane is False
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(solver))
    assert type(restored) is itf.solvers.GraphMatching
    assert restored.get_config() == solver.get_config()
    assert "method='milp'" in repr(solver)
    assert itf.projections.get("auto", solver) is itf.projections.norm


# ------------------------------------------------------------------------------------------- errors
def _valid():
    rng = np.random.default_rng(19)
    return batch([informative_instance(rng, 4), informative_instance(rng, 4)])


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda t: t[:3], ValueError, "Received: tuple of length 3"),
        (lambda t: (t[0][0], *t[1:]), ValueError, r"`unary` of shape \[B, n, m\]"),
        (lambda t: (t[0], t[1][:, :-1], *t[2:]), ValueError, "one row per edge of graph 1"),
        (lambda t: (t[0], t[1], t[2][..., :1], *t[3:]), ValueError, r"`edges1` of shape \[B, E1, 2\]"),
        (lambda t: (t[0], t[1], t[2], t[3][:1], *t[4:]), ValueError, "same batch size"),
        (lambda t: (t[0], t[1], t[2].astype(np.float32), *t[3:]), TypeError, "integer `edges1`"),
        (lambda t: (t[0].astype(np.int32), *t[1:]), TypeError, "floating-point `unary`"),
        (lambda t: (t[0], t[1].astype(np.float64), *t[2:]), TypeError, "one dtype"),
    ],
)
def test_bad_shapes_and_types_fail_at_trace_time(change, error, message):
    with pytest.raises(error, match=message):
        itf.solvers.GraphMatching()(change(_valid()))


def _set(array, index, value):
    array = array.copy()
    array[index] = value
    return array


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: (_set(t[0], (1, 0, 0), np.nan), *t[1:]), r"non-finite `unary` \(NaN or inf\) in instance 1"),
        (lambda t: (t[0], _set(t[1], (0, 0, 0), np.inf), *t[2:]), "non-finite `pairwise`"),
        (
            lambda t: (t[0], t[1], _set(t[2], (0, 0, 1), 4), *t[3:]),
            r"outside the num_nodes1=4 real nodes of instance 0",
        ),
        (lambda t: (t[0], t[1], t[2], _set(t[3], (1, 2, 0), -3), *t[4:]), r"edges2\[1, 2\]"),
        (lambda t: (t[0], t[1], _set(t[2], (0, 1, 1), -1), *t[3:]), r"padding row of `edges1` must be \(-1, -1\)"),
        (lambda t: (t[0], t[1], _set(t[2], (0, 0), [2, 2]), *t[3:]), "self-loops"),
        (lambda t: (*t[:4], np.array([4, 5], np.int32), t[5]), r"`num_nodes1` of shape \[B\] with values in \[0, 4\]"),
        (lambda t: (*t[:4], np.array([3, 4], np.int32), t[5]), "outside the num_nodes1=3 real nodes"),
    ],
)
def test_bad_values_raise_value_errors(change, message):
    with pytest.raises(ValueError, match=message):
        itf.solvers.GraphMatching()(change(_valid()))


def test_bad_values_fail_inside_tf_function():
    inputs = _valid()
    bad = (_set(inputs[0], (0, 1, 1), np.nan), *inputs[1:])
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite"):
        tf.function(itf.solvers.GraphMatching())(tuple(tf.constant(t) for t in bad))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "lpmp"}, "method"),
        ({"time_limit": 0}, "time_limit"),
        ({"num_kicks": -1}, "num_kicks"),
        ({"seed": 1.5}, "seed"),
        ({"num_workers": 0}, "num_workers"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        itf.solvers.GraphMatching(**kwargs)


# ------------------------------------------------------------------------------------- pygmtools
def _pygmtools():
    try:
        import pygmtools

        pygmtools.set_backend("numpy")
        return pygmtools
    except Exception as error:  # noqa: BLE001 - any import failure means: skip with the reason
        pytest.skip(f"pygmtools (numpy backend) is not usable here: {error!r}")


def affinity_matrix(unary, pairwise, edges1, edges2):
    """pygmtools' Lawler affinity (maximised): index ``j * n + i`` for ``x[i, j]``; ``-unary`` on the diagonal,
    ``-pairwise[e, f]`` at ``((j, i), (q, k))`` for ``e = (i, k)``, ``f = (j, q)`` (duplicates summed)."""
    n, m = unary.shape
    K = np.zeros((m, n, m, n))
    for e, (i, k) in enumerate(edges1):
        for f, (j, q) in enumerate(edges2):
            K[j, i, q, k] -= pairwise[e, f]
    K = K.reshape(m * n, m * n)
    K[np.arange(m * n), np.arange(m * n)] -= unary.T.reshape(-1)
    return K


def test_objective_against_pygmtools_rrwm_and_ipfp():
    """Same instances, same objective: pygmtools' RRWM and IPFP (numpy backend, Hungarian rounding) are never
    better than ours; MILP is exact on the trained-like instances (near-random ones at n = 10 take HiGHS
    seconds each, so only ILS runs there)."""
    pygm = _pygmtools()
    rng = np.random.default_rng(20)
    n = 10
    informative = [informative_instance(rng, n, noise=0.6) for _ in range(4)]
    random = [random_instance(rng, n, n) for _ in range(4)]
    inputs = batch(informative + random)
    ils = values_of(inputs, itf.solvers.GraphMatching(method="ils")(inputs)[0].numpy())
    milp = values_of(batch(informative), itf.solvers.GraphMatching(method="milp")(batch(informative))[0].numpy())
    for b, instance in enumerate(informative + random):
        K = affinity_matrix(*instance)
        theirs = {}
        for name, fn in (("rrwm", pygm.rrwm), ("ipfp", pygm.ipfp)):
            x = pygm.hungarian(fn(K[None], np.array([n]), np.array([n]))[0])
            assert_matching(x, n, n, partial=False)
            theirs[name] = objective(*instance, x)
            vec = x.T.reshape(-1)  # the affinity matrix encodes our objective: x^T K x = -objective(x)
            assert float(vec @ K @ vec) == pytest.approx(-theirs[name], abs=1e-6)
        assert ils[b] <= min(theirs.values()) + 1e-4, (b, ils[b], theirs)
        if b < len(informative):
            assert milp[b] == pytest.approx(ils[b], abs=1e-4)
