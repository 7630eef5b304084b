"""Independent oracles for the estimator tests: enumeration of solution sets, exact smoothed solvers by
quadrature or closed form, central finite differences, Monte-Carlo error bars.

Nothing here calls identity_tf: every value is computed from the definitions with numpy / scipy.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.integrate
import scipy.sparse.csgraph
import scipy.special
import scipy.stats

EULER_GAMMA = 0.5772156649015329

# --------------------------------------------------------------------------------------------- solution sets


def khot_vectors(n: int, k: int) -> np.ndarray:
    """All k-hot vectors of length n, ``[C(n, k), n]``."""
    out = []
    for subset in itertools.combinations(range(n), k):
        y = np.zeros(n)
        y[list(subset)] = 1.0
        out.append(y)
    return np.array(out)


def rank_vectors(n: int) -> np.ndarray:
    """All permutations of the ranks ``1..n``, ``[n!, n]``."""
    return np.array(list(itertools.permutations(range(1, n + 1))), dtype=np.float64)


def tour_adjacencies(k: int) -> np.ndarray:
    """Symmetric 0/1 adjacency matrices of all ``(k - 1)! / 2`` distinct undirected tours, ``[T, k, k]``."""
    seen, out = set(), []
    for rest in itertools.permutations(range(1, k)):
        order = (0, *rest)
        a = np.zeros((k, k))
        for i in range(k):
            u, v = order[i], order[(i + 1) % k]
            a[u, v] = a[v, u] = 1.0
        key = a.tobytes()
        if key not in seen:
            seen.add(key)
            out.append(a)
    assert len(out) == math.factorial(k - 1) // 2
    return np.array(out)


def grid_paths(h: int, w: int, neighbourhood: int = 8) -> np.ndarray:
    """0/1 indicators of all simple paths from cell (0, 0) to cell (h - 1, w - 1), ``[P, h, w]`` (DFS)."""
    moves = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]
    if neighbourhood == 4:
        moves = [(di, dj) for di, dj in moves if abs(di) + abs(dj) == 1]
    out = []

    def dfs(cell, visited):
        if cell == (h - 1, w - 1):
            y = np.zeros((h, w))
            for i, j in visited:
                y[i, j] = 1.0
            out.append(y)
            return
        for di, dj in moves:
            nxt = (cell[0] + di, cell[1] + dj)
            if 0 <= nxt[0] < h and 0 <= nxt[1] < w and nxt not in visited:
                visited.add(nxt)
                dfs(nxt, visited)
                visited.remove(nxt)

    dfs((0, 0), {(0, 0)})
    return np.array(out)


def best(costs: np.ndarray, solutions: np.ndarray, sense: str, min_gap: float = 1e-4) -> np.ndarray:
    """The unique optimal solution of ``<costs, y>`` over ``solutions``; asserts the runner-up is ``min_gap`` worse."""
    values = np.tensordot(solutions, costs, axes=costs.ndim)
    if sense == "max":
        values = -values
    order = np.argsort(values, kind="stable")
    assert values[order[1]] - values[order[0]] > min_gap, "instance has (near-)tied optima; pick another one"
    return solutions[order[0]]


def dijkstra_vertex_costs(costs: np.ndarray, neighbourhood: int = 8) -> float:
    """Cost of the cheapest (0, 0) -> (H - 1, W - 1) path on a grid of vertex costs ``>= 0``, both ends counted."""
    h, w = costs.shape
    graph = np.full((h * w, h * w), np.inf)
    for i, j in itertools.product(range(h), range(w)):
        for di, dj in itertools.product((-1, 0, 1), repeat=2):
            if (di, dj) == (0, 0) or (neighbourhood == 4 and abs(di) + abs(dj) != 1):
                continue
            a, b = i + di, j + dj
            if 0 <= a < h and 0 <= b < w:
                graph[i * w + j, a * w + b] = costs[a, b]  # entering a cell pays its cost; zero-cost edges kept
    sparse = scipy.sparse.csgraph.csgraph_from_dense(graph, null_value=np.inf)
    dist = scipy.sparse.csgraph.dijkstra(sparse, directed=True, indices=0)
    return float(costs[0, 0] + dist[h * w - 1])


def is_connected_cell_set(y: np.ndarray) -> bool:
    """Whether the cells marked 1 form one 8-connected set containing both grid corners."""
    h, w = y.shape
    cells = {(i, j) for i, j in zip(*np.nonzero(y > 0.5))}
    if (0, 0) not in cells or (h - 1, w - 1) not in cells:
        return False
    stack, seen = [(0, 0)], {(0, 0)}
    while stack:
        i, j = stack.pop()
        for di, dj in itertools.product((-1, 0, 1), repeat=2):
            nxt = (i + di, j + dj)
            if nxt in cells and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen == cells


# ---------------------------------------------------------------------------------- exact smoothed solvers

NOISE = {
    # (density, cdf) of the standard noise
    "normal": (scipy.stats.norm.pdf, scipy.stats.norm.cdf),
    "gumbel": (scipy.stats.gumbel_r.pdf, scipy.stats.gumbel_r.cdf),
}


def _poisson_binomial_at_most(p_above: np.ndarray, m: int) -> float:
    """P(at most ``m`` of independent events with probabilities ``p_above`` happen)."""
    dist = np.zeros(len(p_above) + 1)
    dist[0] = 1.0
    for p in p_above:
        dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
        dist[0] *= 1 - p
    return float(dist[: m + 1].sum())


def expected_topk(theta: np.ndarray, sigma: float, k: int, noise: str) -> np.ndarray:
    """``E[topk(theta + sigma Z)]`` (Z iid standard ``noise``) by 1-D quadrature over the noise of each item.

    Item i is selected iff at most ``k - 1`` others exceed it; given ``Z_i = z`` the others exceed it
    independently, ``P(theta_j + sigma Z_j > theta_i + sigma z) = 1 - F((theta_i - theta_j) / sigma + z)``.
    """
    pdf, cdf = NOISE[noise]
    theta = np.asarray(theta, np.float64)
    out = np.zeros(len(theta))
    for i in range(len(theta)):
        others = np.delete(theta, i)

        def integrand(z, i=i, others=others):
            above = 1.0 - cdf((theta[i] - others) / sigma + z)
            return pdf(z) * _poisson_binomial_at_most(above, k - 1)

        with np.errstate(over="ignore"):  # the Gumbel density overflows harmlessly (to 0) far in the left tail
            out[i] = scipy.integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-12, epsrel=1e-12, limit=200)[0]
    return out


def expected_ranks_normal(scores: np.ndarray, sigma: float) -> np.ndarray:
    """``E[ranks(scores - sigma Z)]`` (rank 1 = largest), Z iid standard normal: closed form.

    ``rank_i = 1 + #{j : s_j - sigma Z_j > s_i - sigma Z_i}`` and ``sigma (Z_i - Z_j) ~ N(0, 2 sigma^2)``.
    """
    s = np.asarray(scores, np.float64)
    diff = (s[None, :] - s[:, None]) / (sigma * np.sqrt(2.0))  # [i, j]: (s_j - s_i) / (sigma sqrt 2)
    p = scipy.stats.norm.cdf(diff)
    np.fill_diagonal(p, 0.0)
    return 1.0 + p.sum(axis=1)


def softmax(x: np.ndarray) -> np.ndarray:
    return scipy.special.softmax(np.asarray(x, np.float64))


def central_jacobian(fn, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """``J[i, j] = d fn(x)_i / d x_j`` by central differences."""
    x = np.asarray(x, np.float64)
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e.flat[j] = h
        cols.append((np.asarray(fn(x + e)) - np.asarray(fn(x - e))).ravel() / (2 * h))
    return np.stack(cols, axis=1)


# ---------------------------------------------------------------------------------------------- Monte-Carlo


def assert_close_mc(estimates: np.ndarray, exact: np.ndarray, z: float = 4.5, floor: float = 1e-6) -> None:
    """``estimates`` are ``[R, ...]`` iid replicate estimates; their mean must lie within ``z`` standard errors
    (the replicates' own spread, ``std / sqrt(R)``) of ``exact``, entry by entry."""
    estimates = np.asarray(estimates, np.float64)
    mean = estimates.mean(axis=0)
    se = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    bound = z * se + floor
    assert np.all(np.abs(mean - exact) <= bound), {
        "mean": mean,
        "exact": exact,
        "deviation_in_se": np.abs(mean - exact) / np.maximum(se, 1e-12),
    }
