"""Graph matching (quadratic assignment): node matching of two graphs under unary and pairwise costs."""

from __future__ import annotations

import concurrent.futures
import os
import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from identity_tf.solvers import _qap_ils, _qap_milp
from identity_tf.solvers.base import Solver, register

METHODS = ("ils", "milp")


@register
class GraphMatching(Solver):
    """Graph matching: the 0/1 node matching ``x`` minimising ``<unary, x> + <pairwise, z>``, ``z`` induced by ``x``.

    Node ``i`` of graph 1 matched to node ``j`` of graph 2 costs ``unary[i, j]``; a directed edge
    ``e = (i, k)`` of graph 1 mapped onto a directed edge ``f = (j, l)`` of graph 2 (``x[i, j] = x[k, l] = 1``)
    costs ``pairwise[e, f]``. The solver returns ``x`` and the induced edge matching
    ``z[e, f] = x[i, j] * x[k, l]``; the objective is linear in the pair ``(x, z)``, so the gradient methods treat
    ``(unary, pairwise)`` as the costs and ``(x, z)`` as the solution: Identity returns ``-dl/dx`` for ``unary``
    and ``-dl/dz`` for ``pairwise`` (zero for ``pairwise`` when the loss only sees ``x``, as in the paper's
    graph-matching experiment), Blackbox perturbs and re-solves both. The edges and node counts are structure
    and get no gradient. Every edge direction counts on its own (Delaunay graphs list both directions, as the
    original BB-GM code does).

    By default the matching is *perfect*: every node of the smaller graph is matched (all nodes when
    ``n = m``). With ``partial=True`` a node may stay unmatched at cost 0, so only pairs that lower the objective
    are matched (the setup of the LPMP solver that BB-GM trained with).

    Methods:
        * ``"ils"`` (default): iterated local search, vectorised over the batch in numpy: best-improvement
          2-swaps (and moves to free columns) from the Hungarian solution of ``unary`` and from IPFP
          (Leordeanu et al., 2009), then ``num_kicks`` random kicks (rotating a few nodes' partners), seeded by
          ``seed`` so a call is deterministic. Never worse than the Hungarian start; optimal on informative
          (trained-like) costs in our benchmark, within a few percent on near-random costs. See
          ``benchmarks/results/graph_matching.json``.
        * ``"milp"``: exact, HiGHS (``scipy.optimize.milp``) on a sparse Adams-Johnson linearisation with the
          two orientations of each edge pair merged, ``mip_rel_gap = 0``, presolve off; instances in a thread
          pool of ``num_workers``. At ``time_limit`` the best matching found is returned with a
          ``TimeLimitWarning``; without one in time, the ``"ils"`` matching (also with the warning).

    Padding: batches mix graphs of different sizes. Pass node counts as the 5th and 6th inputs (nodes
    ``>= count`` are padding) and pad edge lists with rows of -1. Padded nodes and edges never change the
    matching of the real part: their ``x`` and ``z`` are 0 and their costs are ignored (set them to 0 so that
    projections and losses do not see them either). Self-loops are refused.

    Projections: ``P_norm`` is valid (the matching is invariant to scaling both cost parts by one positive
    number) and acts jointly on ``(unary, pairwise)``; ``P_mean``/``P_std`` are not (``<1, z>`` varies between
    matchings), so ``on_hyperplane`` is False and ``ProjectionLayer("auto")`` picks ``norm``.

    Args:
        method: ``"ils"`` or ``"milp"``.
        partial: Let nodes stay unmatched at cost 0.
        time_limit: Seconds. ``"milp"``: HiGHS's limit per instance. ``"ils"``: the kicks stop once the batch
            has run this long (the starts always complete). None: no limit.
        num_kicks: Random kicks of ``"ils"``.
        seed: Seed of the kicks (None: fresh randomness each call).
        num_workers: Threads over the batch for ``"milp"`` (default: the number of CPU cores).
        validate_args: Check at run time that costs are finite and edges valid.
        name: Name of the solver.

    Call arguments:
        costs: A tuple ``(unary, pairwise, edges1, edges2)`` or
            ``(unary, pairwise, edges1, edges2, num_nodes1, num_nodes2)``.

    Input shape:
        ``unary [B, n, m]`` and ``pairwise [B, E1, E2]`` floats; ``edges1 [B, E1, 2]``, ``edges2 [B, E2, 2]``
        integer node indices (rows of -1 are padding); ``num_nodes1``, ``num_nodes2`` ``[B]`` integers.

    Output shape: ``(x [B, n, m], z [B, E1, E2])``, 0/1 in the costs' dtype.

    Example:
    >>> import numpy as np
    >>> import identity_tf as itf
    >>> unary = np.array([[[0.0, 1.0], [1.0, 0.0]]], "float32")   # alone: 0 -> 0 and 1 -> 1 (cost 0 vs 2)
    >>> edges = np.array([[[0, 1], [1, 0]]], "int32")               # one edge, both directions, in each graph
    >>> pairwise = np.array([[[5.0, 0.0], [0.0, 5.0]]], "float32")  # edge e onto edge f = e costs 5
    >>> x, z = itf.solvers.GraphMatching()((unary, pairwise, edges, edges))
    >>> x.numpy()
    array([[[0., 1.],
            [1., 0.]]], dtype=float32)
    >>> z.numpy()
    array([[[0., 1.],
            [1., 0.]]], dtype=float32)
    """

    sense = "min"
    xla = False
    on_hyperplane = False
    min_rank = 3

    def __init__(
        self,
        method: str = "ils",
        partial: bool = False,
        time_limit: float | None = 10.0,
        num_kicks: int = 20,
        seed: int | None = 0,
        num_workers: int | None = None,
        validate_args: bool = True,
        name: str | None = None,
    ):
        super().__init__(validate_args=validate_args, name=name)
        if method not in METHODS:
            raise ValueError(f"Argument `method` must be one of {METHODS}. Received: method={method!r}")
        if time_limit is not None and (
            isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0
        ):
            raise ValueError(
                f"Argument `time_limit` must be a positive number or None. Received: time_limit={time_limit!r}"
            )
        if isinstance(num_kicks, bool) or not isinstance(num_kicks, int) or num_kicks < 0:
            raise ValueError(f"Argument `num_kicks` must be a non-negative integer. Received: num_kicks={num_kicks!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"Argument `seed` must be an integer or None. Received: seed={seed!r}")
        if num_workers is not None and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1
        ):
            raise ValueError(
                f"Argument `num_workers` must be a positive integer or None. Received: num_workers={num_workers!r}"
            )
        self.method = method
        self.partial = bool(partial)
        self.time_limit = time_limit
        self.num_kicks = num_kicks
        self.seed = seed
        self.num_workers = num_workers

    # ----------------------------------------------------------------------------------------------- API
    def __call__(self, costs) -> tuple[tf.Tensor, tf.Tensor]:
        """Solves every instance; returns ``(x, z)`` (see the class docstring)."""
        unary, pairwise, edges1, edges2, num_nodes1, num_nodes2 = self._convert(costs)
        self.check_shape(tuple(t.shape for t in (unary, pairwise, edges1, edges2, num_nodes1, num_nodes2)))
        inputs = [unary, pairwise, edges1, edges2, num_nodes1, num_nodes2]
        if tf.executing_eagerly():  # direct call: host errors surface as the ValueError they are
            x, z = self.solve_batch(*(t.numpy() for t in inputs))
            return tf.convert_to_tensor(x), tf.convert_to_tensor(z)
        x, z = tf.numpy_function(
            self.solve_batch, inputs, [unary.dtype, unary.dtype], stateful=False, name="graph_matching"
        )
        x.set_shape(unary.shape)
        z.set_shape(pairwise.shape)
        return x, z

    def _convert(self, costs):
        if not isinstance(costs, (tuple, list)) or len(costs) not in (4, 6):
            raise ValueError(
                f"Solver {self.name!r} expects `costs` = (unary, pairwise, edges1, edges2) or (unary, pairwise, "
                f"edges1, edges2, num_nodes1, num_nodes2). Received: {type(costs).__name__} of length "
                f"{len(costs) if isinstance(costs, (tuple, list)) else 'n/a'}"
            )
        unary, pairwise = tf.convert_to_tensor(costs[0]), tf.convert_to_tensor(costs[1])
        for label, t in (("unary", unary), ("pairwise", pairwise)):
            if not t.dtype.is_floating:
                raise TypeError(
                    f"Solver {self.name!r} expects floating-point `{label}`. Received: {label}.dtype={t.dtype.name}"
                )
        if pairwise.dtype != unary.dtype:
            raise TypeError(
                f"Solver {self.name!r} expects `unary` and `pairwise` of one dtype. "
                f"Received: unary.dtype={unary.dtype.name}, pairwise.dtype={pairwise.dtype.name}"
            )
        structure = []
        labels = ("edges1", "edges2", "num_nodes1", "num_nodes2")
        for label, t in zip(labels, costs[2:]):
            t = tf.convert_to_tensor(t)
            if not t.dtype.is_integer:
                raise TypeError(
                    f"Solver {self.name!r} expects integer `{label}`. Received: {label}.dtype={t.dtype.name}"
                )
            structure.append(tf.cast(t, tf.int32))
        if len(structure) == 2:  # no counts: every node is real
            shape = tf.shape(unary)
            structure += [tf.fill(shape[:1], shape[1]), tf.fill(shape[:1], shape[2])]
            structure[2].set_shape(unary.shape[:1])
            structure[3].set_shape(unary.shape[:1])
        return (unary, pairwise, *structure)

    def check_shape(self, shape) -> None:
        """Raises ``ValueError`` at trace time unless ``shape`` is a tuple of the inputs' shapes that fit."""
        if not isinstance(shape, (tuple, list)) or len(shape) not in (4, 6):
            raise ValueError(
                f"Solver {self.name!r} expects the shapes of (unary, pairwise, edges1, edges2[, num_nodes1, "
                f"num_nodes2]). Received: shape={shape}"
            )
        names = ("unary", "pairwise", "edges1", "edges2", "num_nodes1", "num_nodes2")
        shapes = [tf.TensorShape(s) for s in shape]
        expected = {"unary": "[B, n, m]", "pairwise": "[B, E1, E2]", "edges1": "[B, E1, 2]", "edges2": "[B, E2, 2]"}
        for label, s in zip(names, shapes):
            rank = 1 if label.startswith("num_nodes") else 3
            if s.rank != rank or (label.startswith("edges") and s[2] is not None and s[2] != 2):
                raise ValueError(
                    f"Solver {self.name!r} expects `{label}` of shape {expected.get(label, '[B]')}. "
                    f"Received: {label}.shape={s}"
                )
        batch = tf.TensorShape([None])
        for label, s in zip(names, shapes):
            if not batch.is_compatible_with(s[:1]):
                raise ValueError(
                    f"Solver {self.name!r}: all inputs need the same batch size. Received: {label}.shape={s}, "
                    f"batch size {batch[0]} before"
                )
            batch = batch.merge_with(s[:1])
        unary, pairwise, edges1, edges2 = shapes[:4]
        for axis, label, s in ((1, "edges1", edges1), (2, "edges2", edges2)):
            if not tf.TensorShape([pairwise[axis]]).is_compatible_with([s[1]]):
                raise ValueError(
                    f"Solver {self.name!r}: `pairwise` [B, E1, E2] must have one row per edge of graph 1 and one "
                    f"column per edge of graph 2. Received: pairwise.shape={pairwise}, {label}.shape={s}"
                )

    def compute_output_shape(self, input_shape):
        """``(x, z)`` shapes for the shapes of ``(unary, pairwise, ...)``."""
        return tuple(tf.TensorShape(input_shape[0]).as_list()), tuple(tf.TensorShape(input_shape[1]).as_list())

    # ------------------------------------------------------------------------------------------ numpy
    def solve_batch(self, unary, pairwise, edges1, edges2, num_nodes1=None, num_nodes2=None):
        """Solves a numpy batch; returns ``(x [B, n, m], z [B, E1, E2])`` in ``unary``'s dtype."""
        unary, pairwise = np.asarray(unary), np.asarray(pairwise)
        dtype = unary.dtype
        edges1, edges2 = np.asarray(edges1, np.int64), np.asarray(edges2, np.int64)
        B, n, m = unary.shape
        n1 = np.full(B, n) if num_nodes1 is None else np.asarray(num_nodes1, np.int64)
        n2 = np.full(B, m) if num_nodes2 is None else np.asarray(num_nodes2, np.int64)
        if self.validate_args:
            self.check_inputs(unary, pairwise, edges1, edges2, n1, n2)
        unary64, pairwise64 = unary.astype(np.float64), pairwise.astype(np.float64)
        if B == 0:
            x = np.zeros(unary.shape)
        elif self.method == "ils":
            x = _qap_ils.solve(
                unary64, pairwise64, edges1, edges2, n1, n2, self.partial, self.num_kicks, self.seed, self.time_limit
            )
        else:
            x = self._solve_milp(unary64, pairwise64, edges1, edges2, n1, n2)
        return x.astype(dtype), induced_edges_numpy(x, edges1, edges2).astype(dtype)

    def _solve_milp(self, unary, pairwise, edges1, edges2, n1, n2):
        def one(b):
            real1, real2 = edges1[b, :, 0] >= 0, edges2[b, :, 0] >= 0
            x = np.zeros(unary.shape[1:])
            block, message = _qap_milp.solve_one(
                unary[b, : n1[b], : n2[b]],
                pairwise[b][real1][:, real2],
                edges1[b][real1],
                edges2[b][real2],
                self.partial,
                self.time_limit,
            )
            if block is None:  # no matching found in time: the local-search one
                block = _qap_ils.solve(
                    *(a[b : b + 1] for a in (unary, pairwise, edges1, edges2, n1, n2)),
                    partial=self.partial,
                    num_kicks=self.num_kicks,
                    seed=self.seed,
                )[0, : n1[b], : n2[b]]
                message += "; the 'ils' matching is returned"
            x[: n1[b], : n2[b]] = block
            return x, message

        workers = self.num_workers or os.cpu_count() or 1
        if len(unary) < 2 or workers == 1:
            results = [one(b) for b in range(len(unary))]
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(unary))) as pool:
                results = list(pool.map(one, range(len(unary))))
        for b, (_, message) in enumerate(results):
            if message:  # issued here, in the calling thread (warning filters are not thread-safe)
                warnings.warn(
                    f"Solver {self.name!r}, instance {b}: {message}. Received: time_limit={self.time_limit}",
                    _qap_milp.TimeLimitWarning,
                    stacklevel=3,
                )
        return np.stack([x for x, _ in results])

    def check_inputs(self, unary, pairwise, edges1, edges2, num_nodes1, num_nodes2) -> None:
        """Host-side checks (``ValueError`` naming the instance): finite costs, counts and edges in range,
        no self-loops, no edges at padded nodes."""
        B, n, m = unary.shape
        for label, costs in (("unary", unary), ("pairwise", pairwise)):
            finite = np.isfinite(costs).reshape(B, -1).all(axis=1)
            if not finite.all():
                b = int(np.flatnonzero(~finite)[0])
                raise ValueError(f"Solver {self.name!r} received non-finite `{label}` (NaN or inf) in instance {b}.")
        for label, counts, size in (("num_nodes1", num_nodes1, n), ("num_nodes2", num_nodes2, m)):
            if counts.shape != (B,) or np.any(counts < 0) or np.any(counts > size):
                raise ValueError(
                    f"Solver {self.name!r} expects `{label}` of shape [B] with values in [0, {size}]. "
                    f"Received: {label}={counts.tolist()}"
                )
        for label, edges, counts, count_label in (
            ("edges1", edges1, num_nodes1, "num_nodes1"),
            ("edges2", edges2, num_nodes2, "num_nodes2"),
        ):
            padding = edges[..., 0] < 0
            bad = np.argwhere((edges[..., 1] < 0) != padding)
            if len(bad):
                b, e = bad[0]
                raise ValueError(
                    f"Solver {self.name!r}: a padding row of `{label}` must be (-1, -1). "
                    f"Received: {label}[{b}, {e}]={edges[b, e].tolist()}"
                )
            bad = np.argwhere(~padding & ((edges.min(axis=-1) < 0) | (edges.max(axis=-1) >= counts[:, None])))
            if len(bad):
                b, e = bad[0]
                raise ValueError(
                    f"Solver {self.name!r}: `{label}` refers to a node outside the {count_label}={counts[b]} real "
                    f"nodes of instance {b} (use rows of -1 for padding). Received: {label}[{b}, {e}]={edges[b, e].tolist()}"
                )
            bad = np.argwhere(~padding & (edges[..., 0] == edges[..., 1]))
            if len(bad):
                b, e = bad[0]
                raise ValueError(
                    f"Solver {self.name!r} does not accept self-loops. Received: {label}[{b}, {e}]={edges[b, e].tolist()}"
                )

    # ----------------------------------------------------------------------------------- serialisation
    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "method": self.method,
            "partial": self.partial,
            "time_limit": self.time_limit,
            "num_kicks": self.num_kicks,
            "seed": self.seed,
            "num_workers": self.num_workers,
        }


def induced_edges_numpy(x, edges1, edges2):
    """``z [B, E1, E2]`` with ``z[e, f] = x[i, j] * x[k, l]`` for ``e = (i, k)``, ``f = (j, l)``; 0 on padding."""
    x = np.asarray(x)
    b = np.arange(len(x))[:, None, None]
    e1, e2 = np.maximum(edges1, 0), np.maximum(edges2, 0)
    z = x[b, e1[:, :, None, 0], e2[:, None, :, 0]] * x[b, e1[:, :, None, 1], e2[:, None, :, 1]]
    valid = (edges1[:, :, None, 0] >= 0) & (edges2[:, None, :, 0] >= 0)
    return np.where(valid, z, 0.0)


def induced_edge_matching(x, edges1, edges2) -> tf.Tensor:
    """The edge matching ``z [B, E1, E2]`` induced by a node matching ``x [B, n, m]``, in TensorFlow.

    ``z[e, f] = x[i, j] * x[k, l]`` for the edge ``e = (i, k)`` of graph 1 and ``f = (j, l)`` of graph 2; rows
    of -1 (padding) give 0. Use it for the targets of an edge loss: ``z* = induced_edge_matching(x*, ...)``.
    Pure TF (XLA-compilable), differentiable in ``x``.

    Example:
    >>> import identity_tf as itf
    >>> x = [[[0.0, 1.0], [1.0, 0.0]]]
    >>> edges = [[[0, 1], [1, 0], [-1, -1]]]
    >>> itf.solvers.induced_edge_matching(x, edges, edges).numpy()
    array([[[0., 1., 0.],
            [1., 0., 0.],
            [0., 0., 0.]]], dtype=float32)
    """
    x = tf.convert_to_tensor(x)
    edges1 = tf.cast(tf.convert_to_tensor(edges1), tf.int32)
    edges2 = tf.cast(tf.convert_to_tensor(edges2), tf.int32)
    e1, e2 = tf.maximum(edges1, 0), tf.maximum(edges2, 0)
    # x[b, i_e, :] -> [B, E1, m], then the columns j_f -> [B, E1, E2]; the same for the heads (k_e, l_f)
    tails = tf.gather(tf.gather(x, e1[..., 0], batch_dims=1), e2[..., 0], axis=2, batch_dims=1)
    heads = tf.gather(tf.gather(x, e1[..., 1], batch_dims=1), e2[..., 1], axis=2, batch_dims=1)
    valid = tf.logical_and((edges1[..., 0] >= 0)[:, :, None], (edges2[..., 0] >= 0)[:, None, :])
    return tf.where(valid, tails * heads, tf.zeros_like(tails))
