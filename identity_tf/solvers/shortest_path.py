"""Shortest path on a grid of vertex costs (the Warcraft setting of Blackbox-Backprop), batched and XLA-compilable."""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from identity_tf.solvers.base import Solver, assert_finite, assert_nonnegative, register

# (row, column) offsets of the neighbours a path may move to.
_NEIGHBOURS = {
    4: ((-1, 0), (0, -1), (0, 1), (1, 0)),
    8: ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)),
}
# Relaxation steps per `tf.while_loop` iteration: the convergence test (a full reduction) runs once per block.
_STEPS_PER_ITERATION = 4


@register
class ShortestPath(Solver):
    """Minimum-cost path from the top-left to the bottom-right cell of a grid of vertex costs.

    The path starts at cell ``(0, 0)``, ends at cell ``(H - 1, W - 1)`` and moves between 4- or 8-neighbours; its
    cost is the sum of the costs of the cells it visits, both end points included. The output is the path's 0/1
    indicator. Costs must be non-negative. Finite costs up to the float maximum are solved exactly: a map whose
    path sums could overflow is first divided by a power of two (``_rescale``), which keeps its optimal path.

    The solver is pure TensorFlow and compiles with XLA: all maps of the batch are solved at once by min-plus
    (Bellman-Ford) relaxation, ``dist = min(dist, min_{neighbours} dist_nb + costs)`` on all cells at once, until
    nothing changes, followed by a batched walk back from the target along tight predecessors. Each cell also records
    the relaxation step of its last improvement; the walk back prefers the tight neighbour with the smallest
    ``(dist, step)``, a strictly decreasing pair, so it is a simple path even on zero-cost plateaus. Half-precision
    costs are solved in float32.

    Args:
        neighbourhood: 4 or 8, the moves allowed between cells (8 includes diagonals).
        max_iterations: Optional cap on the relaxation steps; default ``H * W``, enough for convergence. A smaller
            cap may return a sub-optimal path.
        validate_args: Check costs for NaN/inf and negative entries at run time (outside XLA).
        name: Optional name.

    Input shape: ``[B, H, W]`` vertex costs, ``>= 0``. Output shape: ``[B, H, W]``, 0/1 in the costs' dtype.

    Example:
    >>> from identity_tf.solvers.shortest_path import ShortestPath
    >>> costs = [[[1.0, 9.0, 9.0],
    ...           [1.0, 9.0, 9.0],
    ...           [9.0, 1.0, 1.0]]]
    >>> ShortestPath(neighbourhood=8)(costs).numpy()[0]
    array([[1., 0., 0.],
           [1., 0., 0.],
           [0., 1., 1.]], dtype=float32)
    """

    sense = "min"
    xla = True
    on_hyperplane = False
    min_rank = 3

    def __init__(
        self,
        neighbourhood: int = 8,
        max_iterations: int | None = None,
        validate_args: bool = True,
        name: str | None = None,
    ):
        super().__init__(validate_args=validate_args, name=name)
        if isinstance(neighbourhood, bool) or neighbourhood not in (4, 8):
            raise ValueError(f"Argument `neighbourhood` must be 4 or 8. Received: neighbourhood={neighbourhood!r}")
        if max_iterations is not None and (
            isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1
        ):
            raise ValueError(
                f"Argument `max_iterations` must be a positive integer or None. Received: max_iterations={max_iterations!r}"
            )
        self.neighbourhood = int(neighbourhood)
        self.max_iterations = max_iterations

    # ------------------------------------------------------------------------------------------------ checks
    def check_shape(self, shape):
        super().check_shape(shape)
        if shape.rank != 3:
            raise ValueError(
                f"Solver {self.name!r} expects `costs` of rank 3, [batch, height, width]. Received: costs.shape={shape}"
            )
        if any(n is not None and n < 1 for n in shape[1:]):
            raise ValueError(
                f"Solver {self.name!r} needs a grid of height and width >= 1 in `costs`. Received: costs.shape={shape}"
            )

    def check_values(self, costs):
        costs = assert_finite(
            costs, f"Solver {self.name!r} received non-finite `costs` (NaN or inf); shortest path needs costs >= 0."
        )
        return assert_nonnegative(
            costs, f"Solver {self.name!r} received negative `costs`; shortest path needs costs >= 0."
        )

    def project_to_domain(self, costs):
        return tf.maximum(costs, tf.zeros([], costs.dtype))

    # ----------------------------------------------------------------------------------------------- solving
    def _solve(self, costs):
        dtype = costs.dtype
        work_dtype = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
        w = self._rescale(tf.cast(costs, work_dtype) + 0.0)  # + 0.0 maps -0.0 to +0.0; [B, H, W]
        dist, step = self._relax(w)
        pred = self._predecessors(w, dist, step)
        return tf.cast(self._walk_back(pred, tf.shape(w)), dtype)

    def _rescale(self, w):
        """Divides maps whose path sums could overflow by a power of two >= 4 H W (exact: only the exponent moves).

        A path visits at most ``H W`` cells, so a map whose largest cost is below ``max_float / (4 H W)`` keeps
        every distance finite and is left untouched (bit for bit). A larger map (finite costs near the float
        maximum) would reach ``inf`` in the relaxation and lose the optimal path; dividing it by a power of two
        keeps the argmin and every comparison between sums of its costs, apart from costs that the division
        pushes below the smallest normal float (about ``1e-38 * 4 H W`` in float32), which round.
        """
        shape = tf.shape(w)
        cells = tf.cast(shape[1], tf.int64) * tf.cast(shape[2], tf.int64)
        largest = tf.reduce_max(w, axis=[1, 2], keepdims=True)  # [B, 1, 1]
        limit = tf.constant(w.dtype.max, w.dtype) / tf.cast(4 * cells, w.dtype)
        bits = tf.cast(tf.math.ceil(tf.math.log(tf.cast(4 * cells, tf.float64)) / math.log(2.0)), tf.int64)
        divisor = tf.cast(tf.bitwise.left_shift(tf.constant(1, tf.int64), bits), w.dtype)  # 2**bits >= 4 H W
        return tf.where(largest > limit, w / divisor, w)

    def _neighbour_values(self, x, fill):
        """``[K, B, H, W]``: for each of the K moves, ``x`` at the neighbour cell (``fill`` outside the grid)."""
        shape = tf.shape(x)
        h, w = shape[1], shape[2]
        padded = tf.pad(x, [[0, 0], [1, 1], [1, 1]], constant_values=fill)  # [B, H + 2, W + 2]
        # each slice [B, H, W]; stacked -> [K, B, H, W]
        return tf.stack(
            [padded[:, 1 + di : 1 + di + h, 1 + dj : 1 + dj + w] for di, dj in _NEIGHBOURS[self.neighbourhood]]
        )

    def _neighbour_min(self, x):
        """Minimum of ``x`` over the neighbours of every cell, ``[B, H, W]`` (+inf outside the grid).

        The 8-neighbourhood uses the separable 3x3 box minimum, which includes the cell itself: harmless for the
        relaxation, since ``dist + costs >= dist``.
        """
        shape = tf.shape(x)
        h, w = shape[1], shape[2]
        padded = tf.pad(x, [[0, 0], [1, 1], [1, 1]], constant_values=float("inf"))  # [B, H + 2, W + 2]
        if self.neighbourhood == 8:
            # minimum over 3 columns: [B, H + 2, W]; then over 3 rows: [B, H, W]
            rows = tf.minimum(tf.minimum(padded[:, :, 0:w], padded[:, :, 1 : w + 1]), padded[:, :, 2 : w + 2])
            return tf.minimum(tf.minimum(rows[:, 0:h], rows[:, 1 : h + 1]), rows[:, 2 : h + 2])
        # up, down, left, right: each [B, H, W]
        vertical = tf.minimum(padded[:, 0:h, 1 : w + 1], padded[:, 2 : h + 2, 1 : w + 1])
        horizontal = tf.minimum(padded[:, 1 : h + 1, 0:w], padded[:, 1 : h + 1, 2 : w + 2])
        return tf.minimum(vertical, horizontal)

    def _relax(self, w):
        """Min-plus relaxation to convergence.

        Returns ``dist`` (``[B, H, W]``, cost of the cheapest path from the source to each cell, both ends included)
        and ``step`` (``[B, H, W]`` int32, the relaxation step of the cell's last improvement, 0 for the source).
        """
        shape = tf.shape(w)
        h, wd = shape[1], shape[2]
        # [B, H, W] True at the source cell (0, 0) of every map
        source = tf.pad(tf.ones([shape[0], 1, 1], tf.bool), [[0, 0], [0, h - 1], [0, wd - 1]])
        dist = tf.where(source, w, tf.constant(float("inf"), w.dtype))  # [B, H, W]
        step = tf.zeros(shape, tf.int32)  # [B, H, W]
        max_steps = h * wd if self.max_iterations is None else tf.constant(self.max_iterations, tf.int32)

        def body(i, dist, step, _):
            start = dist
            for s in range(_STEPS_PER_ITERATION):  # static unroll of the relaxation steps of one block
                relaxed = tf.minimum(dist, self._neighbour_min(dist) + w)  # [B, H, W]
                step = tf.where(relaxed < dist, i * _STEPS_PER_ITERATION + s + 1, step)
                dist = relaxed
            return i + 1, dist, step, tf.reduce_any(dist < start)

        def cond(i, dist, step, changed):
            return changed & (i * _STEPS_PER_ITERATION < max_steps)

        _, dist, step, _ = tf.while_loop(cond, body, [tf.constant(0), dist, step, tf.constant(True)])
        return dist, step

    def _predecessors(self, w, dist, step):
        """``[B, H * W]`` int32: flat index of each cell's predecessor (the source points to itself).

        The predecessor is the tight neighbour (``dist_nb + costs == dist``) with the lexicographically smallest
        ``(dist_nb, step_nb)``; this pair strictly decreases along the walk back, which thus ends at the source.
        """
        shape = tf.shape(w)
        h, wd = shape[1], shape[2]
        moves = _NEIGHBOURS[self.neighbourhood]
        dist_nb = self._neighbour_values(dist, float("inf"))  # [K, B, H, W]
        step_nb = self._neighbour_values(step, tf.int32.max)  # [K, B, H, W]
        tight = tf.math.is_finite(dist_nb) & tf.equal(dist_nb + w, dist)  # [K, B, H, W]
        dist_tight = tf.where(tight, dist_nb, tf.constant(float("inf"), w.dtype))  # [K, B, H, W]
        best = tight & tf.equal(dist_tight, tf.reduce_min(dist_tight, axis=0))  # [K, B, H, W]
        move = tf.argmin(tf.where(best, step_nb, tf.int32.max), axis=0, output_type=tf.int32)  # [B, H, W]
        # flat offset of each move: [K]; gathered per cell -> [B, H, W]
        offsets = tf.stack([di * wd + dj for di, dj in moves])
        flat = tf.reshape(tf.range(h * wd), [1, h, wd])  # [1, H, W] flat index of each cell
        pred = flat + tf.gather(offsets, move)  # [B, H, W]
        pred = tf.where(flat == 0, 0, pred)  # the source points to itself
        return tf.reshape(pred, [shape[0], h * wd])  # [B, H * W]

    def _walk_back(self, pred, shape):
        """Walks from the target to the source in all maps at once; returns the ``[B, H, W]`` float32 indicator."""
        batch, cells = tf.shape(pred)[0], tf.shape(pred)[1]
        rows = tf.range(batch)  # [B]

        def mark(indicator, cur):
            # (map, cell) index pairs [B, 2]; one 1 per map
            return tf.tensor_scatter_nd_update(indicator, tf.stack([rows, cur], axis=1), tf.ones([batch]))

        def body(i, cur, indicator):
            indicator = mark(indicator, cur)
            return i + 1, tf.gather(pred, cur, batch_dims=1), indicator  # cur: [B]

        def cond(i, cur, indicator):
            return tf.reduce_any(cur != 0) & (i < cells)

        cur = tf.fill([batch], cells - 1)  # [B] the target (H - 1, W - 1)
        indicator = tf.zeros([batch, cells])  # [B, H * W]
        _, cur, indicator = tf.while_loop(cond, body, [tf.constant(0), cur, indicator])
        indicator = mark(indicator, cur)  # the source
        return tf.reshape(indicator, shape)  # [B, H * W] -> [B, H, W]

    # -------------------------------------------------------------------------------------------- serialisation
    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "neighbourhood": self.neighbourhood, "max_iterations": self.max_iterations}
