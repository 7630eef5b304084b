"""Any integer linear program, solved exactly with HiGHS through ``scipy.optimize.milp``."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize

from identity_tf.solvers.base import HostSolver, register

#: HiGHS' default ``infinite_cost``: costs at or beyond it count as infinite.
HIGHS_INFINITY = 1e20


def _as_array(name: str, value, ndim: int) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"Argument `{name}` must have {ndim} dimension(s). Received: {name}.shape={array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"Argument `{name}` contains NaN. Received: {name}={array.tolist()}")
    return array


@register
class IntegerLinearProgram(HostSolver):
    """``argmin_x <costs, x>`` subject to ``A_ub x <= b_ub``, ``A_eq x = b_eq``, ``lb <= x <= ub``, x integer.

    The constraints are fixed (part of the layer); the costs come from the network. Each instance is solved to
    proven optimality by HiGHS (``scipy.optimize.milp`` with ``mip_rel_gap=0``; HiGHS' default gap of 1e-4 is
    not exact). Infeasible or unbounded programs raise a ``ValueError`` (HiGHS reports the two together), and so
    do costs of magnitude ``>= 1e20``, which HiGHS treats as infinite (scale them down: the solution is unchanged).

    Args:
        A_ub, b_ub: Inequality constraints ``A_ub @ x <= b_ub`` (shapes ``[p, n]``, ``[p]``) or None.
        A_eq, b_eq: Equality constraints ``A_eq @ x == b_eq`` (shapes ``[q, n]``, ``[q]``) or None.
        bounds: ``(lb, ub)``, scalars or arrays of shape ``[n]``; ``None`` entries mean unbounded.
            Default ``(0, 1)``: a binary program.
        on_hyperplane: Declare that all feasible solutions share ``<1, x>`` (e.g. a cardinality constraint),
            which makes ``projection="auto"`` pick P_std.
        time_limit: Seconds per instance, or None. A run that hits the limit raises (no proven optimum).

    Input shape: ``[B, n]``. Output shape: ``[B, n]``, integer values in the costs' dtype.

    Example:
    >>> import identity_tf as itf
    >>> pick_two = itf.solvers.IntegerLinearProgram(A_eq=[[1, 1, 1]], b_eq=[2])
    >>> pick_two([[3.0, -1.0, 2.0]]).numpy()
    array([[0., 1., 1.]], dtype=float32)
    """

    sense = "min"

    def __init__(
        self,
        A_ub=None,
        b_ub=None,
        A_eq=None,
        b_eq=None,
        bounds=(0, 1),
        on_hyperplane: bool = False,
        time_limit: float | None = None,
        num_workers: int | None = None,
        validate_args: bool = True,
        name: str | None = None,
    ):
        super().__init__(num_workers=num_workers, validate_args=validate_args, name=name)
        self.A_ub, self.b_ub = _as_array("A_ub", A_ub, 2), _as_array("b_ub", b_ub, 1)
        self.A_eq, self.b_eq = _as_array("A_eq", A_eq, 2), _as_array("b_eq", b_eq, 1)
        for a, b, an, bn in ((self.A_ub, self.b_ub, "A_ub", "b_ub"), (self.A_eq, self.b_eq, "A_eq", "b_eq")):
            if (a is None) != (b is None):
                raise ValueError(f"Arguments `{an}` and `{bn}` must be given together. Received: {an}={a}, {bn}={b}")
            if a is not None and a.shape[0] != b.shape[0]:
                raise ValueError(
                    f"`{an}` has {a.shape[0]} rows but `{bn}` has {b.shape[0]} entries. "
                    f"Received: {an}.shape={a.shape}, {bn}.shape={b.shape}"
                )
        if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
            raise ValueError(f"Argument `bounds` must be a pair (lb, ub). Received: bounds={bounds!r}")
        self.bounds = tuple(
            None if b is None else (float(b) if np.ndim(b) == 0 else np.asarray(b, np.float64)) for b in bounds
        )
        widths = {a.shape[1] for a in (self.A_ub, self.A_eq) if a is not None}
        widths |= {b.shape[0] for b in self.bounds if isinstance(b, np.ndarray)}
        if len(widths) > 1:
            raise ValueError(
                f"Constraint matrices and bounds disagree on the number of variables. Received: {sorted(widths)}"
            )
        self.num_variables = widths.pop() if widths else None
        self.on_hyperplane = bool(on_hyperplane)
        self.time_limit = time_limit

    def check_shape(self, shape):
        super().check_shape(shape)
        if shape.rank != 2:
            raise ValueError(f"IntegerLinearProgram expects `costs` of shape [B, n]. Received: costs.shape={shape}")
        if self.num_variables is not None and shape[-1] is not None and shape[-1] != self.num_variables:
            raise ValueError(
                f"IntegerLinearProgram has {self.num_variables} variables but `costs` has {shape[-1]}. "
                f"Received: costs.shape={shape}"
            )

    def check_instance(self, costs: np.ndarray) -> None:
        largest = float(np.max(np.abs(costs), initial=0.0))
        if largest >= HIGHS_INFINITY:
            raise ValueError(
                f"IntegerLinearProgram {self.name!r}: HiGHS treats costs with |c| >= {HIGHS_INFINITY:g} as infinite, so "
                "it cannot solve this program. Scale the costs down (a positive factor leaves the solution "
                f"unchanged), e.g. divide them by their largest magnitude. Received: max(|costs|)={largest:g}"
            )

    def solve_one(self, costs: np.ndarray) -> np.ndarray:
        n = costs.shape[0]
        constraints = []
        if self.A_ub is not None:
            constraints.append(scipy.optimize.LinearConstraint(self.A_ub, -np.inf, self.b_ub))
        if self.A_eq is not None:
            constraints.append(scipy.optimize.LinearConstraint(self.A_eq, self.b_eq, self.b_eq))
        lb, ub = self.bounds
        options = {"mip_rel_gap": 0.0}
        if self.time_limit is not None:
            options["time_limit"] = float(self.time_limit)
        result = scipy.optimize.milp(
            costs,
            integrality=np.ones(n),
            bounds=scipy.optimize.Bounds(-np.inf if lb is None else lb, np.inf if ub is None else ub),
            constraints=constraints,
            options=options,
        )
        if result.status == 2:
            raise ValueError(f"IntegerLinearProgram {self.name!r}: the program is infeasible. ({result.message})")
        if result.status == 3:
            raise ValueError(f"IntegerLinearProgram {self.name!r}: the program is unbounded. ({result.message})")
        if result.status != 0:
            hint = ""
            if result.status == 4:  # HiGHS' "unknown" model status
                hint = (
                    f" Costs, constraint coefficients or bounds near HiGHS' infinity ({HIGHS_INFINITY:g}) or badly "
                    "scaled ones cause this; scale them to moderate magnitudes."
                )
            raise ValueError(
                f"IntegerLinearProgram {self.name!r}: HiGHS found no proven optimum: {result.message}.{hint}"
            )
        return np.round(result.x)

    def get_config(self) -> dict[str, Any]:
        def plain(x):
            return x.tolist() if isinstance(x, np.ndarray) else x

        return {
            **super().get_config(),
            "A_ub": plain(self.A_ub),
            "b_ub": plain(self.b_ub),
            "A_eq": plain(self.A_eq),
            "b_eq": plain(self.b_eq),
            "bounds": [plain(b) for b in self.bounds],
            "on_hyperplane": self.on_hyperplane,
            "time_limit": self.time_limit,
        }
