"""Exact graph matching (QAP) of one instance with HiGHS (``scipy.optimize.milp``).

Binary ``x[i, j]`` (node ``i`` of graph 1 matched to node ``j`` of graph 2) and one continuous ``y`` per
*unordered* pair of assignments ``{a, b}`` that some edge pair links: the term of edge ``e = (i, k)`` and edge
``f = (j, l)`` links ``a = (i, j)`` with ``b = (k, l)``, and the reverse edges ``(k, i)``, ``(l, j)`` link the
same pair, so both orientations share one ``y`` with the summed cost. ``y`` stands for ``x_a x_b`` through a
sparse Adams-Johnson linearisation: for an assignment ``a = (i, j)`` and a row ``k`` (resp. a column ``l``) the
pairs ``{a, (k, l)}`` with a ``y`` form a group ``S``, and

    sum_{y in S} y <= x_a                  (at most one (k, l) of row k is matched: y <= x_a and y <= x_b)
    y_ab >= x_a + x_b - 1                  (only for pairs of positive cost, which the objective pushes down)

which make ``y = x_a x_b`` at every optimal integer ``x``; the group inequalities give a much tighter
relaxation than McCormick's ``y <= x_a, y <= x_b`` per pair. Pairs whose summed cost is zero are left out.
(Measured here: the group form of the lower inequalities, ``sum_S y >= x_a + sum_S x_kl - 1``, made HiGHS
1.5-2x slower on both trained-like and near-random costs.)
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import scipy.sparse


class TimeLimitWarning(RuntimeWarning):
    """HiGHS stopped at the time limit; the best matching found so far was returned (not proved optimal)."""


def solve_one(unary, pairwise, edges1, edges2, partial=False, time_limit=None):
    """Optimal node matching of one instance: ``(x [n, m] 0/1 float64 or None, message)``.

    ``message`` is empty when HiGHS proved optimality; otherwise it says why not, and ``x`` is the best matching
    found (None if there was none). Callers warn with :class:`TimeLimitWarning` (this function may run in a
    thread pool, where warning filters are not safe to use).

    Args:
        unary: ``[n, m]`` (real nodes only).
        pairwise: ``[E1, E2]`` (real edges only).
        edges1, edges2: ``[E1, 2]``, ``[E2, 2]`` int, no padding, no self-loops.
        partial: Nodes may stay unmatched (cost 0); otherwise every node of the smaller graph is matched.
        time_limit: Seconds for HiGHS, or None.
    """
    n, m = unary.shape
    nm = n * m
    if n == 0 or m == 0:
        return np.zeros((n, m)), ""
    # linked assignment pairs of every (edge, edge) term, merged over both orientations: key = lo * nm + hi
    e, f = np.nonzero(pairwise)
    a = edges1[e, 0] * m + edges2[f, 0]
    b = edges1[e, 1] * m + edges2[f, 1]
    keys, inverse = np.unique(np.minimum(a, b) * nm + np.maximum(a, b), return_inverse=True)
    cost = np.bincount(inverse, pairwise[e, f], len(keys))
    keys, cost = keys[cost != 0], cost[cost != 0]
    lo, hi = np.divmod(keys, nm)
    num_y = len(keys)
    y = nm + np.arange(num_y)  # variable index of each pair

    rows, cols, vals, lower, upper = [], [], [], [], []

    def add(constraint_rows, constraint_cols, constraint_vals, lb, ub):
        offset = sum(len(x) for x in lower)
        rows.append(constraint_rows + offset)
        cols.append(constraint_cols)
        vals.append(constraint_vals)
        lower.append(lb)
        upper.append(ub)

    # assignment constraints: rows then columns
    ones = np.ones(nm)
    row_lb = 1.0 if (not partial and n <= m) else 0.0
    col_lb = 1.0 if (not partial and m <= n) else 0.0
    add(np.repeat(np.arange(n), m), np.arange(nm), ones, np.full(n, row_lb), np.ones(n))
    add(np.tile(np.arange(m), n), np.arange(nm), ones, np.full(m, col_lb), np.ones(m))

    if num_y:
        # each pair sits in four groups: (lo, row of hi), (hi, row of lo), (lo, column of hi), (hi, column of lo)
        own = np.concatenate([lo, hi, lo, hi])
        line = np.concatenate([hi // m, lo // m, n + hi % m, n + lo % m])  # row k, or n + column l, of the other
        pair = np.tile(y, 4)
        group_keys, group = np.unique(own * (n + m) + line, return_inverse=True)
        num_groups = len(group_keys)
        group_own = group_keys // (n + m)
        # upper: sum_S y - x_a <= 0
        add(
            np.concatenate([group, np.arange(num_groups)]),
            np.concatenate([pair, group_own]),
            np.concatenate([np.ones(len(pair)), -np.ones(num_groups)]),
            np.full(num_groups, -np.inf),
            np.zeros(num_groups),
        )
        # lower, only where the cost pushes y down: y - x_a - x_b >= -1
        positive = np.flatnonzero(cost > 0)
        k = len(positive)
        add(
            np.tile(np.arange(k), 3),
            np.concatenate([y[positive], lo[positive], hi[positive]]),
            np.concatenate([np.ones(k), -np.ones(2 * k)]),
            np.full(k, -1.0),
            np.full(k, np.inf),
        )

    matrix = scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(sum(len(x) for x in lower), nm + num_y),
    )
    objective = np.concatenate([unary.ravel(), cost])
    integrality = np.concatenate([np.ones(nm), np.zeros(num_y)])
    options = {"mip_rel_gap": 0.0, "presolve": False}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    result = scipy.optimize.milp(
        objective,
        constraints=scipy.optimize.LinearConstraint(matrix, np.concatenate(lower), np.concatenate(upper)),
        integrality=integrality,
        bounds=scipy.optimize.Bounds(0.0, 1.0),
        options=options,
    )
    if result.x is None:
        return None, f"HiGHS found no matching ({result.message})"
    message = "" if result.status == 0 else f"HiGHS stopped before proving optimality ({result.message})"
    return (result.x[:nm] > 0.5).astype(np.float64).reshape(n, m), message
