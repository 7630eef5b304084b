"""Shared pieces of the retrieval losses and metrics: input checks, database masks, ranks among the relevant."""

from __future__ import annotations

import tensorflow as tf

from identity_tf.solvers.ranking import Ranking

#: Internal ranker for ranks that need no gradient (the inputs are already checked).
_RANKER = Ranking(validate_args=False)


def split_targets(y_true):
    """``y_true`` is ``relevance`` or a tuple ``(relevance, valid)`` (the Keras-loss convention of this package;
    a list is always relevance rows)."""
    if isinstance(y_true, tuple):
        if len(y_true) != 2:
            raise ValueError(
                f"`y_true` must be `relevance` or a tuple `(relevance, valid)`. Received: a tuple of {len(y_true)}"
            )
        return y_true[0], y_true[1]
    return y_true, None


def check_inputs(relevance, scores, valid, caller: str):
    """Converts and checks ``relevance [Q, N]``, ``scores [Q, N]`` and ``valid`` (broadcastable to ``[Q, N]``).

    Returns ``(relevance, scores, valid)`` with ``relevance`` in the scores' dtype and ``valid`` a bool
    ``[Q, N]`` tensor (or None). Shapes are checked at trace time; that relevance is 0/1 at run time (outside XLA).
    """
    scores = tf.convert_to_tensor(scores)
    if not scores.dtype.is_floating:
        raise TypeError(f"{caller} expects floating-point `scores`. Received: scores.dtype={scores.dtype.name}")
    if scores.shape.rank != 2:
        raise ValueError(
            f"{caller} expects `scores` of shape [num_queries, num_database] (rank 2). Received: scores.shape={scores.shape}"
        )
    relevance = tf.convert_to_tensor(relevance)
    if not relevance.shape.is_compatible_with(scores.shape):
        raise ValueError(
            f"{caller} expects `relevance` of the shape of `scores`. "
            f"Received: relevance.shape={relevance.shape}, scores.shape={scores.shape}"
        )
    relevance = tf.cast(relevance, scores.dtype)
    if tf.executing_eagerly():
        if bool(tf.reduce_any(relevance * (1 - relevance) != 0)):
            raise ValueError(f"{caller} expects `relevance` with entries in {{0, 1}}. Received: {relevance.numpy()!r}")
    else:
        check = tf.debugging.assert_equal(
            relevance * (1 - relevance), tf.zeros_like(relevance), message=f"{caller}: `relevance` must be 0/1."
        )
        with tf.control_dependencies([check]):
            relevance = tf.identity(relevance)
    if valid is not None:
        valid = tf.convert_to_tensor(valid)
        try:
            tf.broadcast_static_shape(valid.shape, scores.shape)
        except ValueError:
            raise ValueError(
                f"{caller} expects `valid` broadcastable to the shape of `scores`. "
                f"Received: valid.shape={valid.shape}, scores.shape={scores.shape}"
            ) from None
        valid = tf.broadcast_to(tf.cast(valid, tf.bool), tf.shape(scores))
    return relevance, scores, valid


def mask_database(scores, relevance, valid):
    """Moves invalid database entries to the bottom of every ranking and makes them irrelevant.

    Invalid scores become the lowest finite value of the dtype (the ranks of the valid entries are then exactly
    their ranks among the valid entries; ties among invalid ones by position), with zero gradient.
    """
    if valid is None:
        return scores, relevance
    scores = tf.where(valid, scores, tf.constant(scores.dtype.min, scores.dtype))
    return scores, relevance * tf.cast(valid, relevance.dtype)


def ranks_among_relevant(ranks, relevance):
    """Rank of each relevant item among the relevant items of its query, in the order of ``ranks``; no gradient.

    ``ranks`` are ranks 1..n (smaller is better) of ``[Q, N]``; entries of irrelevant items are 0. As in the
    original RaMBO code: the relevant items are shifted above all others (``2 n relevance - ranks``) and ranked.
    """
    ranks = tf.stop_gradient(ranks)
    n = tf.cast(tf.shape(ranks)[-1], ranks.dtype)
    return _RANKER(2.0 * n * relevance - ranks) * relevance


def per_query_mean(values, counts):
    """Values ``[Q]`` rescaled so that their plain mean is the mean over queries with ``counts > 0``.

    Queries with ``counts == 0`` get 0; the others ``values * Q / #(counts > 0)`` (Keras losses average per-query
    values over the whole batch).
    """
    present = tf.cast(counts > 0, values.dtype)
    num_queries = tf.cast(tf.size(values), values.dtype)
    return tf.math.divide_no_nan(values * present * num_queries, tf.reduce_sum(present))
