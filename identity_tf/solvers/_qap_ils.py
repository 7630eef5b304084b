"""Graph matching (QAP) by iterated local search, vectorised over the batch in numpy.

The problem of one instance: rows ``r < n_b`` (nodes of graph 1) are assigned injectively to columns. Columns
``c < m`` are the nodes of graph 2 (those ``>= m_b`` are padding, never used); columns ``m + r`` are *parking*
columns: a row parked there is unmatched (cost 0, no edge terms). The objective of an assignment ``pi`` is

    f(pi) = sum_r U[r, pi_r] + sum_e Q[e, s(pi_a), s(pi_b)],     e = (a, b) a directed edge of graph 1,

with ``Q[e, j, l] = sum_f pairwise[e, f]`` over the edges ``f = (j, l)`` of graph 2 and ``s`` mapping every
parking column to a zero slot ``m``. Which assignments are allowed depends on the mode:

* perfect, ``n_b <= m_b``: every real row on a real column; padded rows on their own parking column.
* perfect, ``n_b > m_b``: every real column used once, ``n_b - m_b`` rows parked (the moves keep the count).
* partial: a real row may park (stay unmatched) on any parking column.

Moves are *2-swaps* (two rows exchange columns) and *relocations* (a row moves to a free column). Their gains
for all ``(row, column)`` pairs come from the local field ``G[r, c]`` (the cost of row ``r`` at column ``c``
with every other row fixed) plus a correction for swaps of two rows joined by an edge, so one best-improvement
step costs ``O(E1 m + n (m + n))`` per instance. The search starts from the Hungarian solution of the unary
costs and from IPFP (Leordeanu et al., 2009), descends to a local optimum from each, then spends ``num_kicks``
kicks in rounds of ``KICKS_PER_ROUND``: each kick rotates the columns of 5-7 random rows of the best solution;
the kicked copies descend together and the best one replaces the best solution if it is better. All instances
and copies of a round are one set of numpy arrays (numpy's per-call overhead is shared; threads would not
help), and a step updates the fields only around the rows that moved.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.optimize

#: Moves that gain less than ``TOLERANCE * max(|unary|, |pairwise|)`` of an instance are not taken.
TOLERANCE = 1e-9
#: Iterations of IPFP (each one local-field evaluation and one Hungarian solve per instance).
IPFP_ITERATIONS = 10
#: A kick rotates the columns of this many random rows (fewer in smaller instances).
KICK_ROWS = (5, 6, 7)
#: Kicked copies of the best solution descended together in one round.
KICKS_PER_ROUND = 5


class Problem:
    """A batch of graph-matching instances prepared for the local search (float64 numpy arrays).

    Args:
        unary: ``[B, n, m]``.
        pairwise: ``[B, E1, E2]``.
        edges1: ``[B, E1, 2]`` int, rows of -1 are padding; every other row joins two distinct real nodes.
        edges2: ``[B, E2, 2]``, the same for graph 2.
        n1, n2: ``[B]`` real node counts (nodes ``>=`` the count are padding).
        partial: Nodes may stay unmatched at cost 0.
    """

    def __init__(self, unary, pairwise, edges1, edges2, n1, n2, partial):
        self.B, self.n, self.m = B, n, m = unary.shape
        self.partial = bool(partial)
        self.n1, self.n2 = np.asarray(n1, np.int64), np.asarray(n2, np.int64)
        park_ok = self.partial | (self.n1 > self.n2)  # [B]: real rows may be parked
        # parking columns: one per row where real rows may park, else only for the padded rows
        self.P = n if np.any(park_ok) else int(np.max(n - self.n1, initial=0))
        self.C = m + self.P
        self.E1 = E1 = edges1.shape[1]
        valid1, valid2 = edges1[..., 0] >= 0, edges2[..., 0] >= 0  # [B, E1], [B, E2]
        self.tail = np.where(valid1, edges1[..., 0], 0)  # [B, E1] (padding -> node 0, zero weight below)
        self.head = np.where(valid1, edges1[..., 1], 0)
        # Q[b, e, j, l] = sum of pairwise[b, e, f] over the edges f = (j, l) of graph 2, [B, E1 + 1, m + 1, m + 1];
        # edge E1 and slot m are zero (the padding edge and the parked slot). For the fields, the rows
        # Q[b, e, s, :m] and Q[b, e, :m, s] are kept contiguous in `rows` [2, B, E1 + 1, m + 1, m].
        self.Q = np.zeros((B, E1 + 1, m + 1, m + 1))
        b, f = np.nonzero(valid2)
        tail2, head2 = edges2[b, f, 0], edges2[b, f, 1]
        # one column of pairwise per edge f of graph 2; an edge listed twice adds (rare: kept off the fast path)
        key = (b * (m + 1) + tail2) * (m + 1) + head2
        _, first = np.unique(key, return_index=True)
        self.Q[b[first], :E1, tail2[first], head2[first]] = pairwise[b[first], :, f[first]]  # [F, E1] columns
        for t in np.setdiff1d(np.arange(len(key)), first):
            self.Q[b[t], :E1, tail2[t], head2[t]] += pairwise[b[t], :, f[t]]
        self.Q[:, :E1][~valid1] = 0.0  # the pairwise costs of padded edges of graph 1 must not count
        self.rows = np.empty((2, B, E1 + 1, m + 1, m))
        np.copyto(self.rows[0], self.Q[..., :m])
        np.copyto(self.rows[1], self.Q.transpose(0, 1, 3, 2)[..., :m])
        self.flat_rows = self.rows.reshape(-1, m)  # row (t * B + b) * (E1 + 1) * (m + 1) + e * (m + 1) + s
        # per node: its out-edges (it is the tail) and in-edges, padded with the zero edge E1 -> [B, n, D]
        self.out_edge, self.out_nbr = _neighbour_lists(self.tail, self.head, valid1, n, E1)
        self.in_edge, self.in_nbr = _neighbour_lists(self.head, self.tail, valid1, n, E1)
        self.out_ptr, self.out_flat_edge, self.out_flat_other = _csr(self.tail, self.head, valid1, n)
        self.in_ptr, self.in_flat_edge, self.in_flat_other = _csr(self.head, self.tail, valid1, n)
        # unary over all columns [B, n, C]: padded entries and parking columns cost 0
        rows, cols = np.arange(n), np.arange(self.C)
        real_row = rows[None, :] < self.n1[:, None]  # [B, n]
        real_col = cols[None, :] < self.n2[:, None]  # [B, C] (parking columns are >= m >= n2)
        self.unary = np.zeros((B, n, self.C))
        self.unary[:, :, :m] = np.where(real_row[:, :, None] & real_col[:, None, :m], unary, 0.0)
        # allowed[b, r, c]: row r may sit on column c; padded row r sits on parking column m + r - n1
        parking = cols[None, None, :] >= m
        own_parking = cols[None, None, :] == (m + rows[None, :] - self.n1[:, None])[:, :, None]
        self.allowed = np.where(
            real_row[:, :, None], real_col[:, None, :] | (parking & park_ok[:, None, None]), own_parking
        )  # [B, n, C]
        scale = np.maximum(
            np.abs(self.unary).max(axis=(1, 2), initial=0.0), np.abs(pairwise).max(axis=(1, 2), initial=0.0)
        )
        self.tolerance = TOLERANCE * np.maximum(scale, 1e-300)  # [B]

    # -------------------------------------------------------------------------------------- evaluation
    def slots(self, pi):
        """Column -> index into Q's node axes (parking -> the zero slot m)."""
        return np.minimum(pi, self.m)

    def local_field(self, pi, inst):
        """``G [A, n, C]``: cost of each row at each column with the other rows fixed (parking columns: 0).

        ``pi`` is ``[A, n]`` for the instances ``inst`` ``[A]`` of the batch.
        """
        A, n, m = len(inst), self.n, self.m
        slots = self.slots(pi)  # [A, n]
        ii = inst[:, None, None]
        # out-edge e = (r, k): Q[e, :, s(pi_k)]; in-edge e = (k, r): Q[e, s(pi_k), :]  -> [A, n, D, m]
        out_slot = np.take_along_axis(slots, self.out_nbr[inst].reshape(A, -1), axis=1).reshape(A, n, -1)
        in_slot = np.take_along_axis(slots, self.in_nbr[inst].reshape(A, -1), axis=1).reshape(A, n, -1)
        field = self.unary[inst]  # [A, n, C] (a copy)
        field[:, :, :m] += self.rows[1][ii, self.out_edge[inst], out_slot].sum(axis=2)
        field[:, :, :m] += self.rows[0][ii, self.in_edge[inst], in_slot].sum(axis=2)
        return field

    def edge_terms(self, pi, inst):
        """Slots of both ends of every edge of graph 1, ``[A, E1]`` each, with the index arrays to gather Q."""
        slots = self.slots(pi)
        a = np.take_along_axis(slots, self.tail[inst], axis=1)
        b = np.take_along_axis(slots, self.head[inst], axis=1)
        return inst[:, None], np.arange(a.shape[1])[None, :], a, b

    def objective(self, pi, inst=None):
        """``f(pi)`` per instance, ``[A]``."""
        inst = np.arange(self.B) if inst is None else inst
        unary = np.take_along_axis(self.unary[inst], pi[:, :, None], axis=2)[:, :, 0].sum(axis=1)
        ii, ee, a, b = self.edge_terms(pi, inst)
        return unary + self.Q[ii, ee, a, b].sum(axis=1)

    # ------------------------------------------------------------------------------------ conversions
    def from_pairs(self, matches):
        """``pi [B, n]`` from per-instance ``(rows, cols)`` of matched pairs; the other rows park."""
        pi = np.full((self.B, self.n), -1)
        for b, (rows, cols) in enumerate(matches):
            pi[b, rows] = cols
        # padded rows park on m + (r - n1); unmatched real rows on the parking columns after those
        rows = np.arange(self.n)[None, :]
        padded = rows >= self.n1[:, None]
        unmatched = (pi < 0) & ~padded
        rank = np.cumsum(unmatched, axis=1) - 1
        pi = np.where(padded, self.m + rows - self.n1[:, None], pi)
        return np.where(unmatched, self.m + self.n - self.n1[:, None] + rank, pi)

    def to_matrix(self, pi):
        """0/1 node matching ``[B, n, m]`` of ``pi``."""
        x = np.zeros((self.B, self.n, self.C))
        np.put_along_axis(x, pi[:, :, None], 1.0, axis=2)
        return x[:, :, : self.m]

    def inverse(self, pi):
        """``inv [B, C]``: the row on each column, -1 where free."""
        inv = np.full((len(pi), self.C), -1)
        np.put_along_axis(inv, pi, np.arange(self.n)[None, :].repeat(len(pi), 0), axis=1)
        return inv

    # ------------------------------------------------------------------------------------------ starts
    def linear_minimiser(self, costs):
        """Per instance the matching (allowed in the mode) minimising ``<costs, x>`` over the real block."""
        matches = []
        for b in range(self.B):
            c = costs[b, : self.n1[b], : self.n2[b]]
            if self.partial:  # matching a pair with cost >= 0 never helps: solve on min(c, 0), drop those
                rows, cols = scipy.optimize.linear_sum_assignment(np.minimum(c, 0.0))
                keep = c[rows, cols] < 0
                rows, cols = rows[keep], cols[keep]
            else:
                rows, cols = scipy.optimize.linear_sum_assignment(c)
            matches.append((rows, cols))
        return self.from_pairs(matches)

    def hungarian_start(self):
        return self.linear_minimiser(self.unary[:, :, : self.m])

    def ipfp_start(self, iterations=IPFP_ITERATIONS):
        """Best discrete point visited by IPFP started at the uniform matrix ``1 / max(n_b, m_b)``.

        The gradient of ``f`` is affine, ``U + L(x)``; ``L`` of a discrete point is its local field minus ``U``,
        and ``L`` of the iterate is carried along the line-search steps, so no dense QAP matrix is formed.
        """
        inst = np.arange(self.B)
        m = self.m
        unary = self.unary[:, :, :m]
        real = self.real_block()  # [B, n, m]
        size = np.maximum(np.maximum(self.n1, self.n2), 1)[:, None, None]
        x = real / size
        # L(uniform) = L(ones on the real block) / size; edges join real nodes only and Q is zero off the real
        # nodes of graph 2, so that is Q summed over the other endpoint
        bb = np.arange(self.B)[:, None, None]
        ones_out = self.Q[:, :, :m, :m].sum(axis=3)[bb, self.out_edge].sum(axis=2)  # [B, n, m]
        ones_in = self.Q[:, :, :m, :m].sum(axis=2)[bb, self.in_edge].sum(axis=2)
        lx = real * (ones_out + ones_in) / size
        best_pi, best_f = None, np.full(self.B, np.inf)
        for _ in range(iterations):
            pi = self.linear_minimiser(unary + lx)
            point = self.to_matrix(pi)
            lb = (self.local_field(pi, inst)[:, :, :m] - unary) * real
            f = (unary * point).sum(axis=(1, 2)) + 0.5 * (point * lb).sum(axis=(1, 2))
            better = f < best_f
            best_pi = pi if best_pi is None else np.where(better[:, None], pi, best_pi)
            best_f = np.where(better, f, best_f)
            d, ld = point - x, lb - lx
            slope = ((unary + lx) * d).sum(axis=(1, 2))
            curvature = 0.5 * (d * ld).sum(axis=(1, 2))
            with np.errstate(divide="ignore", invalid="ignore"):
                step = np.where(curvature > 0, np.clip(-slope / (2 * curvature), 0.0, 1.0), 1.0)
            step = np.where(slope < 0, step, 0.0)[:, None, None]
            if not np.any(step > 0):
                break
            x, lx = x + step * d, lx + step * ld
        return best_pi

    def real_block(self):
        """``[B, n, m]``: 1 on the real rows and columns of each instance."""
        rows, cols = np.arange(self.n), np.arange(self.m)
        real = (rows[None, :, None] < self.n1[:, None, None]) & (cols[None, None, :] < self.n2[:, None, None])
        return real.astype(np.float64)

    # ------------------------------------------------------------------------------------ local search
    def state(self, pi, inst=None):
        """The search state of assignments ``pi [S, n]`` of instances ``inst [S]`` (default: the batch)."""
        inst = np.arange(self.B) if inst is None else np.asarray(inst)
        state = State(pi, inst, self.local_field(pi, inst), None, self.edge_correction(pi, inst))
        state.pair = self.pair_matrix(inst, np.arange(len(inst))[:, None], state.correction, None)
        return state

    def pair_matrix(self, inst, rows, value, pair):
        """Adds ``value`` of edges (``[S, E1]``, or the edges ``e`` of ``rows`` as a ``(value, e)`` pair) at
        ``pair[row, tail, head]`` and ``pair[row, head, tail]``; returns the new ``[S, n, n]`` matrix."""
        n = self.n
        if isinstance(value, tuple):
            value, e = value
            tail, head = self.tail[inst, e], self.head[inst, e]
        else:
            tail, head = self.tail[inst], self.head[inst]
        index = np.concatenate([((rows * n + tail) * n + head).ravel(), ((rows * n + head) * n + tail).ravel()])
        size = (len(inst) if pair is None else len(pair)) * n * n
        added = np.bincount(index, np.tile(value.ravel(), 2), size).reshape(-1, n, n)
        return added if pair is None else pair + added

    def edge_correction(self, pi, inst, rows=None, edges=None):
        """Swap-gain correction of each edge ``e = (a, b)`` of graph 1 under ``pi``: the field-based gain of
        swapping ``a`` and ``b`` counts ``e`` with the old column of the other end, so it is off by
        ``Q[e, s_b, s_a] + Q[e, s_a, s_b] - Q[e, s_b, s_b] - Q[e, s_a, s_a]``. ``[S, E1]`` for all edges, or
        ``[T]`` for ``edges [T]`` of state rows ``rows [T]`` (instances ``inst [T]``)."""
        slots = self.slots(pi)
        if edges is None:
            ii, ee = inst[:, None], np.arange(self.tail.shape[1])[None, :]
            a = np.take_along_axis(slots, self.tail[inst], axis=1)
            b = np.take_along_axis(slots, self.head[inst], axis=1)
        else:
            ii, ee = inst, edges
            a, b = slots[rows, self.tail[inst, edges]], slots[rows, self.head[inst, edges]]
        Q = self.Q
        return Q[ii, ee, b, a] + Q[ii, ee, a, b] - Q[ii, ee, b, b] - Q[ii, ee, a, a]

    def move(self, state, rows, nodes, new):
        """Moves ``nodes [T]`` (rows of the assignment) of state rows ``rows [T]`` to columns ``new [T]``.

        ``state`` is updated in place; the moves of one state row must leave an injective assignment. Only the
        neighbours of a moved node see it: for an out-edge ``e = (y, x)`` the field of ``x`` holds
        ``Q[e, s(pi_y), :]``, for an in-edge ``e = (x, y)`` it holds ``Q[e, :, s(pi_y)]``; the corrections
        change on the edges at moved nodes.
        """
        n, m, S = self.n, self.m, len(state.inst)
        inst = state.inst[rows]
        so, sn = self.slots(state.pi[rows, nodes]), self.slots(new)
        state.pi[rows, nodes] = new
        moved = np.zeros((S, n), bool)
        moved[rows, nodes] = True
        # out-edges of the moved nodes (table 0: Q[e, s, :]) then in-edges (table 1: Q[e, :, s])
        out_owner, out_position = _ragged(self.out_ptr, inst * n + nodes)
        in_owner, in_position = _ragged(self.in_ptr, inst * n + nodes)
        owner = np.concatenate([out_owner, in_owner])
        e = np.concatenate([self.out_flat_edge[out_position], self.in_flat_edge[in_position]])
        x = np.concatenate([self.out_flat_other[out_position], self.in_flat_other[in_position]])
        table = np.repeat([0, self.B], [len(out_owner), len(in_owner)])
        base = ((table + inst[owner]) * (self.E1 + 1) + e) * (m + 1)
        delta = np.take(self.flat_rows, base + sn[owner], axis=0) - np.take(self.flat_rows, base + so[owner], axis=0)
        rr = rows[owner]
        index = ((rr * n + x) * m)[:, None] + np.arange(m)[None, :]  # [T, m]
        change = np.bincount(index.ravel(), delta.ravel(), S * n * m).reshape(S, n, m)
        if self.C == m:
            state.field += change
        else:
            state.field[:, :, :m] += change
        # the edges whose correction changes: at a moved node (an edge between two moved nodes: once)
        keep = np.concatenate([np.ones(len(out_owner), bool), ~moved[rr[len(out_owner) :], x[len(out_owner) :]]])
        touched_rows, touched_edges = [rr[keep]], [e[keep]]
        if self.E1 == 0:
            return
        r, e = np.concatenate(touched_rows), np.concatenate(touched_edges)
        ii = state.inst[r]
        value = self.edge_correction(state.pi, ii, r, e)
        delta = value - state.correction[r, e]
        state.correction[r, e] = value
        state.pair = self.pair_matrix(ii, r, (delta, e), state.pair)

    def descend(self, state, max_steps=100_000):
        """Best-improvement 2-swap / relocation descent of every state row to a local optimum (in place).

        Swapping rows ``r`` and ``k`` gains ``G[r, pi_k] - G[r, pi_r] + G[k, pi_r] - G[k, pi_k] + pair[r, k]``
        (``[A, n, n]``); relocating row ``r`` to a free column ``c`` gains ``G[r, c] - G[r, pi_r]``
        (``[A, n, C]``). The best of both is taken while it improves by more than the tolerance.
        """
        pi, field, inst = state.pi, state.field, state.inst
        n, C = self.n, self.C
        relocations = C > n  # else every column is taken (perfect matching of equal real sizes): swaps only
        not_self = ~np.eye(n, dtype=bool)
        parked_col = np.arange(C) >= self.m  # [C]
        everyone = np.arange(len(inst))
        active = everyone
        allowed_all = self.allowed[inst]  # [S, n, C]
        row_base = (everyone[:, None, None] * n + np.arange(n)[None, :, None]) * C  # [S, n, 1]
        for _ in range(max_steps):
            if active.size == 0:
                break
            A = len(active)
            if A == len(everyone):  # all rows still descending: no copies
                p, g, pair, allowed = pi, field, state.pair, allowed_all
            else:
                p, g, pair, allowed = pi[active], field[active], state.pair[active], allowed_all[active]
            index = row_base[:A] + p[:, None, :]  # [A, n, n]: flat index of (r, pi_k)
            at = np.take(g, index)  # G[r, pi_k]
            current = np.diagonal(at, axis1=1, axis2=2)  # [A, n]: G[r, pi_r]
            swap = at + at.transpose(0, 2, 1)
            swap -= current[:, :, None]
            swap -= current[:, None, :]
            swap += pair
            swap_ok = np.take(allowed, index)  # [A, n, n]: r allowed on pi_k
            swap = np.where(swap_ok & swap_ok.transpose(0, 2, 1) & not_self, swap, np.inf).reshape(A, -1)
            if relocations:
                free = np.ones((A, C), bool)
                np.put_along_axis(free, p, False, axis=1)
                relocate_ok = allowed & free[:, None, :]
                if not self.partial:  # a relocation keeps the number of parked rows
                    relocate_ok &= (p >= self.m)[:, :, None] == parked_col[None, None, :]
                relocate = np.where(relocate_ok, g - current[:, :, None], np.inf)
                gains = np.concatenate([swap, relocate.reshape(A, -1)], axis=1)
            else:
                gains = swap
            flat = gains.argmin(axis=1)
            improve = gains[np.arange(len(active)), flat] < -self.tolerance[inst[active]]
            if not np.any(improve):
                break
            b, flat = active[improve], flat[improve]
            is_swap = flat < n * n
            r = np.where(is_swap, flat // n, (flat - n * n) // C)
            target = np.where(is_swap, flat % n, (flat - n * n) % C)  # the other row, or the free column
            old = pi[b, r]
            k = target[is_swap]
            self.move(
                state,
                np.concatenate([b, b[is_swap]]),
                np.concatenate([r, k]),
                np.concatenate([np.where(is_swap, pi[b, np.where(is_swap, target, 0)], target), old[is_swap]]),
            )
            active = b
        return state

    def kick(self, state, copies, rng):
        """``copies`` kicked copies of every row of ``state`` (copy-major): the columns of a few random real
        rows of the assignment rotated."""
        kicked = state.repeat(copies)
        pi, inst = kicked.pi, kicked.inst
        S = len(inst)
        keys = rng.random((S, self.n))
        keys[np.arange(self.n)[None, :] >= self.n1[inst][:, None]] = np.inf  # only real rows
        order = np.argsort(keys, axis=1)
        size = np.minimum(rng.choice(KICK_ROWS, size=S), self.n1[inst])  # [S]
        rows, nodes, new = [], [], []
        for s in np.unique(size):
            if s < 2:
                continue
            chosen_rows = np.flatnonzero(size == s)
            chosen = order[chosen_rows, :s]  # [S', s]
            rows.append(np.repeat(chosen_rows, s))
            nodes.append(chosen.ravel())
            new.append(pi[chosen_rows[:, None], np.roll(chosen, -1, axis=1)].ravel())
        if rows:
            self.move(kicked, np.concatenate(rows), np.concatenate(nodes), np.concatenate(new))
        return kicked

    def best_of(self, state, copies):
        """For a copy-major state of ``copies`` copies per instance: the best copy of each, as a ``[B]`` state."""
        f = self.objective(state.pi, state.inst).reshape(copies, self.B)
        choice = f.argmin(axis=0) * self.B + np.arange(self.B)  # first best copy
        return state.take(choice), f.min(axis=0)


class State:
    """Assignments ``pi [S, n]`` of instances ``inst [S]`` with their local fields ``[S, n, C]``, swap
    corrections ``pair [S, n, n]`` of rows joined by an edge, and per-edge corrections ``[S, E1]``."""

    def __init__(self, pi, inst, field, pair, correction):
        self.pi, self.inst, self.field, self.pair, self.correction = pi, inst, field, pair, correction

    def take(self, index):
        return State(*(a[index] for a in (self.pi, self.inst, self.field, self.pair, self.correction)))

    def repeat(self, copies):
        return self.take(np.tile(np.arange(len(self.inst)), copies))

    def where(self, mask, other):
        """Rows of ``self`` where ``mask [S]``, else of ``other``."""
        pick = [np.where(mask.reshape(-1, *[1] * (a.ndim - 1)), a, b) for a, b in zip(self._arrays(), other._arrays())]
        return State(*pick)

    def _arrays(self):
        return (self.pi, self.inst, self.field, self.pair, self.correction)


def solve(unary, pairwise, edges1, edges2, n1, n2, partial=False, num_kicks=20, seed=0, time_limit=None):
    """Node matching ``[B, n, m]`` (0/1, float64) by iterated local search; see the module docstring.

    The two starts are descended together; the ``num_kicks`` kicks run in rounds of ``KICKS_PER_ROUND``
    kicked copies of the best solution so far, descended together (numpy's per-call overhead is shared).
    ``time_limit`` (seconds, or None) stops the rounds early; the starts and their descents always run.
    """
    problem = Problem(unary, pairwise, edges1, edges2, n1, n2, partial)
    B = problem.B
    if B == 0 or problem.n == 0 or problem.m == 0:
        return np.zeros(unary.shape)
    deadline = None if time_limit is None else time.monotonic() + time_limit
    rng = np.random.default_rng(seed)
    starts = np.concatenate([problem.hungarian_start(), problem.ipfp_start()])  # [2B, n], copy-major
    best, best_f = problem.best_of(problem.descend(problem.state(starts, np.tile(np.arange(B), 2))), 2)
    remaining = num_kicks
    while remaining > 0 and (deadline is None or time.monotonic() < deadline):
        copies = min(KICKS_PER_ROUND, remaining)
        remaining -= copies
        candidate, candidate_f = problem.best_of(problem.descend(problem.kick(best, copies, rng)), copies)
        better = candidate_f < best_f - problem.tolerance
        best, best_f = candidate.where(better, best), np.where(better, candidate_f, best_f)
    return problem.to_matrix(best.pi)


def _neighbour_lists(node, other, valid, n, num_edges):
    """Per node its edges and their other ends: ``[B, n, D]`` each (D = the largest degree, at least 1).

    ``node``/``other`` ``[B, E]`` are the two ends of each edge; padded slots hold the zero edge ``num_edges``
    and node 0.
    """
    B = node.shape[0]
    degree = np.zeros((B, n), np.int64)
    np.add.at(degree, (np.nonzero(valid)[0], node[valid]), 1)
    D = max(int(degree.max(initial=0)), 1)
    edges = np.full((B, n, D), num_edges, np.int64)
    others = np.zeros((B, n, D), np.int64)
    b, e = np.nonzero(valid)
    key = b * n + node[b, e]  # sort the edges by (instance, node); position within each group -> slot
    order = np.argsort(key, kind="stable")
    b, e, key = b[order], e[order], key[order]
    first = np.searchsorted(key, key, side="left")
    slot = np.arange(len(key)) - first
    edges[b, node[b, e], slot] = e
    others[b, node[b, e], slot] = other[b, e]
    return edges, others


def _csr(node, other, valid, n):
    """Edges grouped by (instance, node) in CSR form: ``ptr [B * n + 1]``, edge ids and other ends ``[E]``."""
    b, e = np.nonzero(valid)
    key = b * n + node[b, e]
    order = np.argsort(key, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(key, minlength=node.shape[0] * n))])
    return ptr, e[order], other[b, e][order]


def _ragged(ptr, keys):
    """For CSR groups ``keys [K]``: the index into ``keys`` and the flat position of every member, ``[T]`` each."""
    starts, counts = ptr[keys], ptr[keys + 1] - ptr[keys]
    owner = np.repeat(np.arange(len(keys)), counts)
    first = np.cumsum(counts) - counts  # position of each group's first member in the output
    return owner, starts[owner] + np.arange(len(owner)) - first[owner]
