"""Linear assignment (bipartite matching) with scipy's Hungarian-type solver."""

from __future__ import annotations

import numpy as np
import scipy.optimize

from identity_tf.solvers.base import HostSolver, register


@register
class LinearAssignment(HostSolver):
    """Minimum-cost assignment of rows to columns: ``argmin_{X} <costs, X>`` over 0/1 matrices with at most one
    one per row and column and ``min(n, m)`` ones in total (a perfect matching when square).

    Solved per instance with ``scipy.optimize.linear_sum_assignment`` on the host; the batch runs in a thread
    pool (scipy releases the GIL). Rectangular costs are allowed. Every solution has ``min(n, m)`` ones, so
    the solver is on a hyperplane (P_mean / P_std keep the solution).

    Args:
        num_workers: Threads over the batch (default: number of CPU cores).
        validate_args: Check costs for NaN/inf.

    Input shape: ``[B, n, m]``. Output shape: ``[B, n, m]``, 0/1 in the costs' dtype.

    Example:
    >>> import identity_tf as itf
    >>> itf.solvers.LinearAssignment()([[[4.0, 1.0], [2.0, 3.0]]]).numpy()
    array([[[0., 1.],
            [1., 0.]]], dtype=float32)
    """

    sense = "min"
    on_hyperplane = True
    min_rank = 3

    def check_shape(self, shape):
        super().check_shape(shape)
        if shape.rank != 3:
            raise ValueError(f"LinearAssignment expects `costs` of shape [B, n, m]. Received: costs.shape={shape}")

    def solve_one(self, costs: np.ndarray) -> np.ndarray:
        rows, cols = scipy.optimize.linear_sum_assignment(costs)
        solution = np.zeros_like(costs)
        solution[rows, cols] = 1.0
        return solution
