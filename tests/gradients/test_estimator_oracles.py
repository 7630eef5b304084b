"""Perturbed optimizers, Fenchel-Young losses, I-MLE and Blackbox backprop against independent oracles.

Oracles (``_oracles.py``, numpy / scipy only): exact expectations by 1-D quadrature or closed form (Gumbel
argmax: softmax; normal ranks: sum of normal CDFs), their Jacobians by central finite differences, and optimal
solutions by brute-force enumeration of all k-subsets, permutations, tours and grid paths (plus Dijkstra from
``scipy.sparse.csgraph``). Monte-Carlo estimates are replicated over the batch axis (every row of the batch
holds the same instance and draws its own noise), so each check uses the replicates' own standard error.
"""

import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf

_spec = importlib.util.spec_from_file_location("_oracles", os.path.join(os.path.dirname(__file__), "_oracles.py"))
oracles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracles)

REPLICATES = 32  # rows of the batch, each an independent estimate
SAMPLES = 1024  # Monte-Carlo samples per row (32768 in all)


def tape_grad(fn, costs, upstream):
    """``(fn(costs), d <fn(costs), upstream> / d costs)`` as numpy arrays."""
    costs = tf.constant(costs, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(costs)
        y = fn(costs)
        loss = tf.reduce_sum(y * tf.constant(upstream, tf.float32))
    return y.numpy(), tape.gradient(loss, costs).numpy()


def replicate(x):
    return np.repeat(np.asarray(x, np.float32)[None], REPLICATES, axis=0)


def test_quadrature_oracle_agrees_with_closed_forms():
    """The oracle itself: quadrature reproduces softmax (Gumbel argmax), sums to k, and P(top-n) = 1."""
    theta = np.array([0.3, -0.2, 0.5, 0.0])
    np.testing.assert_allclose(oracles.expected_topk(theta, 0.7, 1, "gumbel"), oracles.softmax(theta / 0.7), atol=1e-9)
    np.testing.assert_allclose(oracles.expected_topk(theta, 0.7, 2, "normal").sum(), 2.0, atol=1e-9)
    np.testing.assert_allclose(oracles.expected_ranks_normal(theta, 0.7).sum(), 10.0, atol=1e-12)
    # two items, normal noise: P(item 0 wins) = Phi((theta_0 - theta_1) / (sigma sqrt 2))
    p = oracles.expected_topk(np.array([0.4, 0.0]), 0.5, 1, "normal")[0]
    np.testing.assert_allclose(p, oracles.NOISE["normal"][1](0.4 / (0.5 * np.sqrt(2))), atol=1e-9)


# ------------------------------------------------------------------------------------ perturbed optimizers

THETA3 = np.array([0.4, -0.1, 0.2])
THETA4 = np.array([0.3, -0.2, 0.5, 0.0])
SIGMA = 0.7

# (id, solver, costs, noise, exact E[y(costs)] as a function of the costs)
PERTURBED_CASES = [
    ("argmax-gumbel", itf.solvers.Argmax(), THETA4, "gumbel", lambda c: oracles.softmax(c / SIGMA)),
    ("argmax-normal", itf.solvers.Argmax(), THETA3, "normal", lambda c: oracles.expected_topk(c, SIGMA, 1, "normal")),
    ("top2-normal", itf.solvers.TopK(k=2), THETA4, "normal", lambda c: oracles.expected_topk(c, SIGMA, 2, "normal")),
    ("top2-gumbel", itf.solvers.TopK(k=2), THETA4, "gumbel", lambda c: oracles.expected_topk(c, SIGMA, 2, "gumbel")),
    # min solver: noisy costs are costs - sigma Z; expected ranks in closed form
    ("ranking-normal", itf.solvers.Ranking(), THETA4, "normal", lambda c: oracles.expected_ranks_normal(c, SIGMA)),
]


@pytest.mark.parametrize("case", PERTURBED_CASES, ids=[c[0] for c in PERTURBED_CASES])
def test_perturbed_forward_and_gradient_match_the_exact_smoothed_solver(case):
    """Forward ~ E[y(theta + sigma Z)] (exact); backward ~ J^T u with J the central-difference Jacobian of it."""
    _, solver, theta, noise, exact = case
    upstream = np.array([0.8, -0.5, 0.3, -0.9][: len(theta)])
    y, grad = tape_grad(
        lambda c: itf.gradients.perturbed(
            solver, c, sigma=SIGMA, num_samples=SAMPLES, noise=noise, seed=tf.constant([11, 12], tf.int64)
        ),
        replicate(theta),
        replicate(upstream),
    )
    oracles.assert_close_mc(y, exact(theta))
    jacobian = oracles.central_jacobian(exact, theta)  # [output, input]
    expected_grad = jacobian.T @ upstream
    oracles.assert_close_mc(grad, expected_grad)
    # power: the error bars are small against the quantity tested
    se = grad.std(axis=0, ddof=1) / np.sqrt(REPLICATES)
    assert 4.5 * se.max() < 0.35 * np.abs(expected_grad).max()


def test_perturbed_sample_mean_converges_to_the_expectation_not_to_the_solution():
    """Sanity of the smoothing itself: E[argmax] is strictly inside the simplex, far from the hard solution."""
    y, _ = tape_grad(
        lambda c: itf.gradients.perturbed(
            itf.solvers.Argmax(),
            c,
            sigma=SIGMA,
            num_samples=SAMPLES,
            noise="gumbel",
            seed=tf.constant([1, 2], tf.int64),
        ),
        replicate(THETA4),
        replicate(np.zeros(4)),
    )
    assert np.abs(y.mean(0) - np.eye(4)[2]).max() > 0.5
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)


# ------------------------------------------------------------------------------------- Fenchel-Young losses


def fenchel_young(solver, costs, y_true, noise, seed=(21, 22)):
    costs = tf.constant(costs, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(costs)
        loss = itf.gradients.fenchel_young_loss(
            solver, costs, y_true, sigma=SIGMA, num_samples=SAMPLES, noise=noise, seed=tf.constant(seed, tf.int64)
        )
        total = tf.reduce_sum(loss)
    return loss.numpy(), tape.gradient(total, costs).numpy()


def test_fenchel_young_gumbel_argmax_value_and_gradient_in_closed_form():
    """Gumbel argmax: E[max_i theta_i + sigma G_i] = sigma (logsumexp(theta / sigma) + euler_gamma), so the loss
    is that minus <theta, y> and its gradient is softmax(theta / sigma) - y."""
    y_true = np.eye(4)[0]
    loss, grad = fenchel_young(itf.solvers.Argmax(), replicate(THETA4), replicate(y_true), "gumbel")
    lse = np.log(np.exp(THETA4 / SIGMA).sum())
    exact_loss = SIGMA * (lse + oracles.EULER_GAMMA) - THETA4 @ y_true
    oracles.assert_close_mc(loss, exact_loss)
    # the gradient must equal the gradient of the exact loss, by central differences of the closed form
    exact_fn = lambda c: SIGMA * (np.log(np.exp(c / SIGMA).sum()) + oracles.EULER_GAMMA) - c @ y_true  # noqa: E731
    fd = oracles.central_jacobian(exact_fn, THETA4)[0]
    np.testing.assert_allclose(fd, oracles.softmax(THETA4 / SIGMA) - y_true, atol=1e-7)
    oracles.assert_close_mc(grad, fd)


def test_fenchel_young_normal_topk_gradient_matches_quadrature():
    y_true = np.array([0.0, 1.0, 1.0, 0.0])
    _, grad = fenchel_young(itf.solvers.TopK(k=2), replicate(THETA4), replicate(y_true), "normal")
    oracles.assert_close_mc(grad, oracles.expected_topk(THETA4, SIGMA, 2, "normal") - y_true)


def test_fenchel_young_min_solver_gradient_has_the_cost_sign():
    """Ranking is a "min" solver (theta = -costs): d loss / d costs = -(E[ranks] - ranks_true)."""
    ranks_true = np.array([4.0, 3.0, 1.0, 2.0])
    _, grad = fenchel_young(itf.solvers.Ranking(), replicate(THETA4), replicate(ranks_true), "normal")
    oracles.assert_close_mc(grad, -(oracles.expected_ranks_normal(THETA4, SIGMA) - ranks_true))


# ----------------------------------------------------------------------------------------------------- I-MLE


class FixedNoise:
    """A duck-typed noise object returning known values (I-MLE accepts any object with ``sample``)."""

    def __init__(self, values):
        self.values = np.asarray(values, np.float32)

    def sample(self, shape, seed=None, dtype=tf.float32):
        return tf.ensure_shape(tf.cast(tf.reshape(self.values, shape), dtype), self.values.shape)


def test_imle_with_known_noise_matches_enumeration_max_solver():
    rng = np.random.default_rng(3)
    num_samples, batch, n, lam = 2, 3, 5, 1.5
    theta = rng.normal(size=(batch, n))
    upstream = rng.normal(size=(batch, n))
    eps = rng.normal(size=(num_samples, batch, n))
    solver = itf.solvers.TopK(k=2)
    y, grad = tape_grad(
        lambda c: itf.gradients.imle(solver, c, lam=lam, noise=FixedNoise(eps), num_samples=num_samples),
        theta,
        upstream,
    )
    subsets = oracles.khot_vectors(n, 2)
    theta32, eps32, u32 = (a.astype(np.float32).astype(np.float64) for a in (theta, eps, upstream))
    samples = np.array(
        [[oracles.best(theta32[b] + eps32[s, b], subsets, "max") for b in range(batch)] for s in range(num_samples)]
    )
    targets = np.array(
        [
            [oracles.best(theta32[b] + eps32[s, b] - lam * u32[b], subsets, "max") for b in range(batch)]
            for s in range(num_samples)
        ]
    )
    assert np.any(samples != targets)  # the test exercises a non-zero gradient
    np.testing.assert_array_equal(y, samples.mean(0))
    np.testing.assert_allclose(grad, (samples - targets).mean(0) / lam, rtol=1e-6, atol=1e-7)


def test_imle_with_known_noise_matches_enumeration_min_solver():
    """Ranking ("min"): perturbed costs are costs - eps (forward) and costs - eps + lam u (target)."""
    rng = np.random.default_rng(4)
    num_samples, batch, n, lam = 3, 2, 4, 0.8
    costs = rng.normal(size=(batch, n))
    upstream = rng.normal(size=(batch, n))
    eps = rng.normal(size=(num_samples, batch, n))
    y, grad = tape_grad(
        lambda c: itf.gradients.imle(itf.solvers.Ranking(), c, lam=lam, noise=FixedNoise(eps), num_samples=num_samples),
        costs,
        upstream,
    )
    perms = oracles.rank_vectors(n)
    c32, eps32, u32 = (a.astype(np.float32).astype(np.float64) for a in (costs, eps, upstream))
    samples = np.array(
        [[oracles.best(c32[b] - eps32[s, b], perms, "min") for b in range(batch)] for s in range(num_samples)]
    )
    targets = np.array(
        [
            [oracles.best(c32[b] - eps32[s, b] + lam * u32[b], perms, "min") for b in range(batch)]
            for s in range(num_samples)
        ]
    )
    assert np.any(samples != targets)
    np.testing.assert_allclose(y, samples.mean(0), rtol=1e-6)
    np.testing.assert_allclose(grad, (targets - samples).mean(0) / lam, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_imle_gumbel_argmax_expectation_is_a_difference_of_softmaxes(scale):
    """With Gumbel(scale) noise: E[y(theta + eps)] = softmax(theta / scale) and the expected I-MLE gradient is
    (softmax(theta / scale) - softmax((theta - lam u) / scale)) / lam."""
    lam = 1.0
    upstream = np.array([0.6, -0.4, 0.2, -0.7])
    y, grad = tape_grad(
        lambda c: itf.gradients.imle(
            itf.solvers.Argmax(),
            c,
            lam=lam,
            noise=itf.noise.Gumbel(scale),
            num_samples=SAMPLES,
            seed=tf.constant([31, 32], tf.int64),
        ),
        replicate(THETA4),
        replicate(upstream),
    )
    oracles.assert_close_mc(y, oracles.softmax(THETA4 / scale))
    exact = (oracles.softmax(THETA4 / scale) - oracles.softmax((THETA4 - lam * upstream) / scale)) / lam
    oracles.assert_close_mc(grad, exact)
    assert np.abs(exact).max() > 0.05


# ----------------------------------------------------------------------------------------- Blackbox backprop


def random_symmetric_distances(rng, batch, k):
    d = rng.uniform(1.0, 3.0, size=(batch, k, k))
    d = 0.5 * (d + d.transpose(0, 2, 1))
    d[:, np.arange(k), np.arange(k)] = 0.0
    return d.astype(np.float32)


TSP_METHODS = ["dp", "milp", "cp_sat"]


@pytest.mark.parametrize("k", [4, 5])
@pytest.mark.parametrize("method", TSP_METHODS)
def test_blackbox_tsp_matches_enumeration_of_tours_with_asymmetric_upstream(method, k):
    """BB on TSP ("min"): gradient = (y(sym(w + lam g)) - y(w)) / lam. The upstream g is not symmetric, so
    w + lam g is not a valid (symmetric) input: the solver symmetrises it, which cannot change the optimum since
    <w', A> = <sym(w'), A> for every symmetric tour adjacency A; both are checked by enumerating all tours."""
    rng = np.random.default_rng(10 + k)
    batch, lam = 6, 2.0
    w = random_symmetric_distances(rng, batch, k)
    g = rng.normal(size=(batch, k, k)).astype(np.float32)
    solver = itf.solvers.TSP(method=method, num_workers=1)
    y, grad = tape_grad(lambda c: itf.gradients.blackbox(solver, c, lam=lam), w, g)
    tours = oracles.tour_adjacencies(k)
    w64, g64 = w.astype(np.float64), g.astype(np.float64)
    changed = 0
    for b in range(batch):
        y_exact = oracles.best(w64[b], tours, "min", min_gap=1e-3)
        perturbed = w64[b] + lam * g64[b]
        target = oracles.best(0.5 * (perturbed + perturbed.T), tours, "min", min_gap=1e-3)
        np.testing.assert_array_equal(target, oracles.best(perturbed, tours, "min", min_gap=1e-3))
        np.testing.assert_array_equal(y[b], y_exact)
        np.testing.assert_allclose(grad[b], (target - y_exact) / lam, atol=1e-7)
        changed += int(np.any(target != y_exact))
    assert changed >= 2


def test_blackbox_shortest_path_clamps_negative_perturbed_costs_designed_instance():
    """w' = w + lam g has a very negative cell. Clamped at 0 (the solver's domain) it is off the optimal path
    (unique among all 2922 simple paths of the 3 x 4 king graph); on the raw w' the best simple path would run
    through it. The BB gradient is (y(max(w', 0)) - y(w)) / lam with the clamped optimum."""
    lam = 20.0
    w = np.array([[1, 9, 9, 9], [9, 1, 9, 9], [9, 9, 1, 1]], np.float64)  # optimum: the diagonal, then right
    w_prime = np.array([[1, 1, 1, 9], [9, 9, 9, 1], [-40, 9, 9, 1]], np.float64)
    g = ((w_prime - w) / lam).astype(np.float32)
    paths = oracles.grid_paths(3, 4)
    assert len(paths) == 2922
    w_prime32 = w.astype(np.float32) + np.float32(lam) * g  # the solver sees the float32 perturbation
    y_exact = oracles.best(w, paths, "min", min_gap=1.0)
    target = oracles.best(np.maximum(w_prime32.astype(np.float64), 0.0), paths, "min", min_gap=1.0)
    raw_values = np.tensordot(paths, w_prime32.astype(np.float64), axes=2)
    assert raw_values.min() < (w_prime32 * target).sum() - 10.0  # clamping matters: raw w' prefers the -40 cell
    np.testing.assert_allclose(target.sum(), 5)  # the top row then down the right column
    y, grad = tape_grad(lambda c: itf.gradients.blackbox(itf.solvers.ShortestPath(), c, lam=lam), w[None], g[None])
    np.testing.assert_array_equal(y[0], y_exact)
    np.testing.assert_allclose(grad[0], (target - y_exact) / lam, atol=1e-7)


def test_blackbox_shortest_path_target_is_optimal_for_clamped_costs_by_dijkstra():
    """Random 4 x 4 maps with many negative perturbed cells: the re-solve recovered from the BB gradient,
    t = y + lam * grad, is a connected 0/1 cell set joining the corners whose clamped cost is Dijkstra's optimum
    (zero cells make ties, so the path itself is not unique)."""
    rng = np.random.default_rng(5)
    batch, lam = 6, 2.0  # lam a power of two: t is recovered exactly
    w = rng.uniform(0.0, 1.0, size=(batch, 4, 4)).astype(np.float32)
    g = rng.normal(size=(batch, 4, 4)).astype(np.float32)
    perturbed = w + np.float32(lam) * g
    assert (perturbed < 0).mean() > 0.2
    y, grad = tape_grad(lambda c: itf.gradients.blackbox(itf.solvers.ShortestPath(), c, lam=lam), w, g)
    target = y + lam * grad
    for b in range(batch):
        clamped = np.maximum(perturbed[b].astype(np.float64), 0.0)
        assert set(np.unique(target[b])) <= {0.0, 1.0}
        assert oracles.is_connected_cell_set(target[b])
        np.testing.assert_allclose((clamped * target[b]).sum(), oracles.dijkstra_vertex_costs(clamped), atol=1e-5)
        np.testing.assert_allclose(
            (w[b] * y[b]).sum(), oracles.dijkstra_vertex_costs(w[b].astype(np.float64)), atol=1e-5
        )
