"""Exact Held-Karp dynamic programming for the symmetric TSP, batched, in pure TensorFlow (XLA-compilable).

Cities are ``0..k-1``; every tour starts and ends at city 0. With ``S`` a subset of ``{1..k-1}`` and ``j`` in
``S``, ``dp[S, j]`` is the length of the shortest path that leaves city 0, visits exactly the cities of ``S`` and
ends at ``j``::

    dp[{j}, j] = d[0, j]
    dp[S, j]   = min_{i in S \\ {j}} dp[S \\ {j}, i] + d[i, j]
    optimum    = min_j dp[{1..k-1}, j] + d[j, 0]

The states are grouped in layers by ``|S| = p``. Every state of layer ``p`` has exactly ``p - 1`` candidate
predecessors, so a layer is one gather + add + reduce_min over a dense ``[n_states_p, p - 1, B]`` tensor, with
no padding (hence no +inf slot). All index tables depend on ``k`` only: they are built once in numpy (cached
per ``k``) and enter the graph as constants. The tour is read back with a Python-unrolled walk of ``k - 1``
steps of gathers (``k`` is static). Time and memory grow as ``k^2 2^k``: ``k <= 13`` is the intended range.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import tensorflow as tf

#: Largest number of cities the DP accepts (``k = 15`` holds ~115k states and ~750k candidates per instance).
MAX_CITIES = 15


@dataclasses.dataclass(frozen=True)
class HeldKarpTables:
    """Static index tables of the DP for ``k`` cities (``m = k - 1`` cities besides the start city 0).

    Layer ``p`` (``1 <= p <= m``) holds the states ``(S, j)`` with ``|S| = p``, ordered by ``(S, j)``.
    Flat cost indices address the row-major flattened ``[k, k]`` distance matrix: ``i * k + j``.

    Attributes:
        k: Number of cities.
        first_edge: ``[m]`` flat index of ``d[0, j]`` for the layer-1 states ``({j}, j)``.
        node: ``node[p - 1]`` is ``[n_p]``, the end city ``j`` of each state of layer ``p``.
        pred: ``pred[p - 1]`` (``p >= 2``) is ``[n_p, p - 1]``, the index in layer ``p - 1`` of the candidate
            predecessor states ``(S \\ {j}, i)``; ``pred[0]`` is ``None``.
        edge: ``edge[p - 1]`` (``p >= 2``) is ``[n_p, p - 1]``, the flat index of ``d[i, j]`` for the same
            candidates; ``edge[0]`` is ``None``.
        close_edge: ``[m]`` flat index of ``d[j, 0]`` for the last-layer states ``({1..m}, j)``.
    """

    k: int
    first_edge: np.ndarray
    node: tuple
    pred: tuple
    edge: tuple
    close_edge: np.ndarray


@functools.cache
def tables(k: int) -> HeldKarpTables:
    """Builds (once per ``k``) the index tables of the Held-Karp DP for ``k >= 3`` cities."""
    if k < 3 or k > MAX_CITIES:
        raise ValueError(f"Held-Karp tables need 3 <= k <= {MAX_CITIES}. Received: k={k}")
    m = k - 1  # bit b of a subset mask stands for city b + 1
    masks = np.arange(1 << m, dtype=np.int64)
    popcount = np.array([s.bit_count() for s in range(1 << m)], dtype=np.int64)
    # position[mask, b] = index of the state (mask, city b + 1) within its layer (-1 if b not in mask)
    position = np.full((1 << m, m), -1, dtype=np.int64)

    node, pred, edge = [], [], []
    for p in range(1, m + 1):
        layer_masks = masks[popcount == p]  # ascending
        # [n_masks, m] membership bits -> states (mask, b) in (mask, b) order
        member = (layer_masks[:, None] >> np.arange(m)[None, :]) & 1
        state_mask_idx, state_bit = np.nonzero(member)  # row-major: sorted by (mask, b)
        state_mask = layer_masks[state_mask_idx]
        position[state_mask, state_bit] = np.arange(len(state_mask))
        node.append((state_bit + 1).astype(np.int32))
        if p == 1:
            pred.append(None)
            edge.append(None)
            continue
        # Candidate predecessors of (S, j): (S \ {j}, i) for the p - 1 bits i of S \ {j}, in ascending i.
        prev_mask = state_mask ^ (1 << state_bit)  # [n_p]
        prev_member = (prev_mask[:, None] >> np.arange(m)[None, :]) & 1  # [n_p, m]
        _, prev_bit = np.nonzero(prev_member)  # row-major: exactly p - 1 bits per row
        prev_bit = prev_bit.reshape(len(state_mask), p - 1)  # [n_p * (p - 1)] -> [n_p, p - 1]
        pred.append(position[prev_mask[:, None], prev_bit].astype(np.int32))
        edge.append(((prev_bit + 1) * k + (state_bit[:, None] + 1)).astype(np.int32))

    cities = np.arange(1, k, dtype=np.int32)
    # the last layer holds the single full mask, so its states are ordered by city: j = 1..m
    assert np.array_equal(node[-1], cities)
    return HeldKarpTables(
        k=k,
        first_edge=cities.copy(),  # d[0, j] has flat index j
        node=tuple(node),
        pred=tuple(pred),
        edge=tuple(edge),
        close_edge=cities * k,  # d[j, 0] has flat index j * k
    )


def tour(distances: tf.Tensor) -> tf.Tensor:
    """Optimal tours of a batch of distance matrices.

    The DP runs state-major (``[n_states, B]``): every gather then copies contiguous rows of ``B`` values,
    about 6x faster on CPU than batch-major gathers. Only the minima are kept in the forward pass; the argmin
    is recomputed during the walk back for the ``B`` visited states only (cheaper than an argmin per state).

    Args:
        distances: ``[B, k, k]`` float tensor with static ``k`` (``3 <= k <= MAX_CITIES``); only the entries
            ``d[i, j]`` with ``i != j`` are read. Ties are broken towards the lowest index (deterministic).

    Returns:
        ``[B, k]`` int32 city order of an optimal tour starting at city 0.
    """
    k = distances.shape[-1]
    t = tables(k)
    batch = tf.shape(distances)[0]
    flat = tf.transpose(tf.reshape(distances, [batch, k * k]))  # [B, k, k] -> [B, k * k] -> [k * k, B]

    values = [tf.gather(flat, t.first_edge)]  # values[p - 1]: [n_p, B], dp of the states of layer p
    for p in range(2, k):
        # [n_{p-1}, B] gathered to [n_p, p - 1, B], plus the edge costs [n_p, p - 1, B]
        candidates = tf.gather(values[-1], t.pred[p - 1]) + tf.gather(flat, t.edge[p - 1])
        values.append(tf.reduce_min(candidates, axis=1))  # [n_p, B]

    closed = values[-1] + tf.gather(flat, t.close_edge)  # [m, B]: full paths closed back to city 0
    state = tf.argmin(closed, axis=0, output_type=tf.int32)  # [B], index in the last layer

    # Walk back from the last layer to layer 1 (unrolled: k is static); reversed_order[p - 1] is the p-th city.
    instance = tf.range(batch)  # [B]
    reversed_order = []
    for p in range(k - 1, 0, -1):
        reversed_order.append(tf.gather(t.node[p - 1], state))  # [B]
        if p > 1:
            pred = tf.gather(t.pred[p - 1], state)  # [B, p - 1] predecessor states in layer p - 1
            edge = tf.gather(t.edge[p - 1], state)  # [B, p - 1] flat edge indices
            column = tf.broadcast_to(instance[:, None], tf.shape(pred))  # [B, p - 1]
            # the same candidates as in the forward pass, for the visited state of each instance: [B, p - 1]
            candidates = tf.gather_nd(values[p - 2], tf.stack([pred, column], axis=-1)) + tf.gather_nd(
                flat, tf.stack([edge, column], axis=-1)
            )
            choice = tf.argmin(candidates, axis=-1, output_type=tf.int32)  # [B]
            state = tf.gather(pred, choice[:, None], batch_dims=1)[:, 0]  # pred[b, choice[b]]: [B]
    start = tf.zeros([batch], dtype=tf.int32)
    return tf.stack([start] + reversed_order[::-1], axis=1)  # [B, k]


def tour_to_adjacency(order: tf.Tensor, k: int, dtype: tf.DType) -> tf.Tensor:
    """``[B, k]`` city orders -> ``[B, k, k]`` symmetric 0/1 adjacency matrices of the closed tours."""
    successor = tf.roll(order, shift=-1, axis=1)  # [B, k]: the city visited after order[:, t]
    at = tf.one_hot(order, k, dtype=dtype)  # [B, k (step), k (city)]
    nxt = tf.one_hot(successor, k, dtype=dtype)  # [B, k (step), k (city)]
    directed = tf.einsum("btu,btv->buv", at, nxt)  # [B, k, k]: 1 at (order[t], order[t + 1])
    # k >= 3: the k undirected edges of a Hamiltonian cycle are distinct, so the sum stays 0/1
    return directed + tf.transpose(directed, [0, 2, 1])


def adjacency(distances: tf.Tensor) -> tf.Tensor:
    """``[B, k, k]`` distances -> ``[B, k, k]`` symmetric 0/1 adjacency of an optimal tour (``distances``' dtype).

    Half-precision inputs are solved in float32.
    """
    dtype = distances.dtype
    work = distances if dtype in (tf.float32, tf.float64) else tf.cast(distances, tf.float32)
    return tour_to_adjacency(tour(work), distances.shape[-1], dtype)
