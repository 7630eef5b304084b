"""Cost projections that leave the solver's solution unchanged (paper section 3.4).

They are ordinary differentiable ops placed *before* the solver in the forward graph:
``costs -> (+ margin noise) -> P -> solver``. Autodiff then applies ``P'(costs)^T`` to the Identity update on the
backward pass (paper eq. 11); no gradient is projected by hand. All projections act per example over all
non-batch axes.

* ``mean``: ``P_mean(w) = w - mean(w)`` — valid when all solutions lie on a hyperplane ``<1, y> = const``.
* ``norm``: ``P_norm(w) = w / ||w||`` — always valid (argmin is scale invariant). At ``w = 0`` the norm is
  guarded: ``||w||`` is replaced by ``max(||w||, eps)`` (the paper's code divides by zero).
* ``std``: ``P_std = P_norm o P_mean``.
* ``plane(w, a)``: ``w - <a, w> a / <a, a>``, projection onto the subspace orthogonal to ``a``.

Structured costs (a tuple such as graph matching's ``(unary, pairwise, edges1, edges2)``, see
:mod:`identity_tf._structured`): the floating-point parts are projected *jointly*, as one vector
``w = (unary, pairwise)`` per example (one mean over all their entries, one norm ``sqrt(|unary|^2 +
|pairwise|^2)``), which is the paper's projection of the concatenated cost vector; the integer parts pass
through. Scaling the parts separately would change the solution (their relative weight matters).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from identity_tf import _structured
from identity_tf._utils import compute_dtype, non_batch_axes

EPSILON = 1e-12

NAMES = ("mean", "norm", "std")


def mean(costs: tf.Tensor) -> tf.Tensor:
    """Subtracts the per-example mean: ``P_mean(w) = w - <1, w> 1 / n``.

    Example:
    >>> import identity_tf as itf
    >>> itf.projections.mean([[1.0, 2.0, 6.0]]).numpy()
    array([[-2., -1.,  3.]], dtype=float32)
    """
    if _structured.is_structured(costs):
        parts, rebuild = _structured.split(costs)
        total = tf.add_n([tf.reduce_sum(p, axis=non_batch_axes(p)) for p in parts])  # [B]
        count = tf.add_n([tf.cast(tf.reduce_prod(tf.shape(p)[1:]), p.dtype) for p in parts])
        return rebuild([p - _per_example(total / count, p) for p in parts])
    costs = tf.convert_to_tensor(costs)
    return costs - tf.reduce_mean(costs, axis=non_batch_axes(costs), keepdims=True)


def norm(costs: tf.Tensor, epsilon: float = EPSILON) -> tf.Tensor:
    """Scales each example to unit Euclidean norm: ``P_norm(w) = w / max(||w||, epsilon)``.

    Computed in float32 for half-precision inputs. The guard makes ``P_norm(0) = 0`` with a finite gradient.

    Example:
    >>> import identity_tf as itf
    >>> itf.projections.norm([[3.0, 4.0]]).numpy()
    array([[0.6, 0.8]], dtype=float32)
    """
    if _structured.is_structured(costs):
        parts, rebuild = _structured.split(costs)
        xs = [tf.cast(p, compute_dtype(p)) for p in parts]
        squared = tf.add_n([tf.reduce_sum(tf.square(x), axis=non_batch_axes(x)) for x in xs])  # [B]
        inverse = tf.math.rsqrt(tf.maximum(squared, tf.cast(epsilon, squared.dtype) ** 2))
        return rebuild([tf.cast(x * _per_example(inverse, x), p.dtype) for x, p in zip(xs, parts)])
    costs = tf.convert_to_tensor(costs)
    x = tf.cast(costs, compute_dtype(costs))
    squared = tf.reduce_sum(tf.square(x), axis=non_batch_axes(x), keepdims=True)
    # rsqrt(max(|w|^2, eps^2)): below the guard the max picks the constant, so no NaN gradient at w = 0.
    inverse = tf.math.rsqrt(tf.maximum(squared, tf.cast(epsilon, x.dtype) ** 2))
    return tf.cast(x * inverse, costs.dtype)


def _per_example(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """``[B] -> [B, 1, ..., 1]`` to broadcast against ``like`` ``[B, ...]``."""
    return tf.reshape(
        tf.cast(values, like.dtype), tf.concat([tf.shape(values), tf.ones([like.shape.rank - 1], tf.int32)], 0)
    )


def std(costs: tf.Tensor, epsilon: float = EPSILON) -> tf.Tensor:
    """Standardises each example: ``P_std = P_norm o P_mean`` (zero mean, unit norm).

    Example:
    >>> import identity_tf as itf
    >>> itf.projections.std([[1.0, 3.0]]).numpy().round(4)
    array([[-0.7071,  0.7071]], dtype=float32)
    """
    return norm(mean(costs), epsilon=epsilon)


def plane(costs: tf.Tensor, a) -> tf.Tensor:
    """Projects each example onto the subspace orthogonal to ``a``: ``w - <a, w> a / <a, a>`` (paper eq. 12).

    Args:
        costs: ``[B, ...]``.
        a: Normal vector with the per-example shape of ``costs`` (``[...]``) or one per example (``[B, ...]``);
            for structured costs a tuple with one such tensor per floating-point part.

    Example:
    >>> import identity_tf as itf
    >>> itf.projections.plane([[1.0, 2.0, 6.0]], a=[1.0, 1.0, 1.0]).numpy()
    array([[-2., -1.,  3.]], dtype=float32)
    """
    if _structured.is_structured(costs):
        parts, rebuild = _structured.split(costs)
        if not isinstance(a, (tuple, list)) or len(a) != len(parts):
            raise ValueError(
                f"Argument `a` must be a tuple with one normal per floating-point part of `costs` ({len(parts)}). "
                f"Received: a={a!r}"
            )
        a = [_broadcast_normal(tf.cast(tf.convert_to_tensor(n), p.dtype), p) for n, p in zip(a, parts)]
        a_dot_w = tf.add_n([tf.reduce_sum(n * p, axis=non_batch_axes(p)) for n, p in zip(a, parts)])
        a_dot_a = tf.add_n([tf.reduce_sum(n * n * tf.ones_like(p), axis=non_batch_axes(p)) for n, p in zip(a, parts)])
        return rebuild([p - _per_example(a_dot_w / a_dot_a, p) * n for n, p in zip(a, parts)])
    costs = tf.convert_to_tensor(costs)
    a = _broadcast_normal(tf.cast(tf.convert_to_tensor(a), costs.dtype), costs)
    axes = non_batch_axes(costs)
    a_dot_w = tf.reduce_sum(a * costs, axis=axes, keepdims=True)
    a_dot_a = tf.reduce_sum(a * a, axis=axes, keepdims=True)
    return costs - a_dot_w / a_dot_a * a


def _broadcast_normal(a: tf.Tensor, costs: tf.Tensor) -> tf.Tensor:
    """The normal ``a`` as ``[1 or B, ...]`` against ``costs [B, ...]``."""
    if a.shape.rank == costs.shape.rank - 1:
        a = a[tf.newaxis]  # [...] -> [1, ...]
    if a.shape.rank != costs.shape.rank:
        raise ValueError(
            f"Argument `a` must have the per-example shape of `costs` or the full shape. "
            f"Received: a.shape={a.shape}, costs.shape={costs.shape}"
        )
    return a


_BY_NAME: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {"mean": mean, "norm": norm, "std": std}


def get(name: str | None, solver=None) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """Returns the projection function for a name.

    Args:
        name: "mean", "norm", "std", "auto" or None (no projection, returns None).
        solver: Needed for "auto": P_std if ``solver.on_hyperplane`` else P_norm. For "mean"/"std" a solver
            that is not on a hyperplane is an error (the projection would change its solution).

    Example:
    >>> import identity_tf as itf
    >>> itf.projections.get("auto", itf.solvers.TopK(k=2)).__name__
    'std'
    """
    if name is None or name == "none":
        return None
    if name == "auto":
        if solver is None:
            raise ValueError("Projection 'auto' needs the solver it projects for. Received: solver=None")
        return std if solver.on_hyperplane else norm
    if name not in _BY_NAME:
        raise ValueError(
            f"Unknown projection. Expected one of {list(_BY_NAME)}, 'auto' or None. Received: name={name!r}"
        )
    if solver is not None and name in ("mean", "std") and not solver.on_hyperplane:
        raise ValueError(
            f"Projection {name!r} subtracts the mean, which changes the solution of solver {solver.name!r} "
            f"(its solutions are not on a hyperplane <1, y> = const). Use 'norm'. Received: name={name!r}"
        )
    return _BY_NAME[name]
