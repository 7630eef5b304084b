"""Metrics of solver outputs: how close a 0/1 solution is to the true one, and retrieval metrics on scores.

Solutions (``y_true``, ``y_pred``: 0/1 arrays, batch first; a prediction is rounded): :func:`exact_match` (1 when
every entry equals the true one: exact tours, exact paths), :func:`overlap` (the fraction of the true solution's ones
that the prediction has: tour edges) and :func:`cost_ratio` (``<c, y_pred> / <c, y_true>`` for true costs ``c``: 1 is
optimal), per example, and the Keras metrics :class:`ExactMatch` and :class:`Overlap`.

Retrieval: recall at K (paper eq. 25) and mean average precision. Inputs follow the rank-based losses: ``relevance [Q, N]`` in {0, 1}, ``scores [Q, N]`` (higher = more similar),
and an optional ``valid`` mask broadcastable to ``[Q, N]`` (False leaves an entry out of a query's database, e.g.
the query itself). Ties are ranked by position, as :class:`identity_tf.solvers.Ranking` ranks them. Queries
without a relevant valid entry cannot be scored and are left out of the means.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from identity_tf import _retrieval as retrieval


# ----------------------------------------------------------------------------------------------- solutions
def _entries(x):
    return list(range(1, x.shape.rank))


def exact_match(y_true, y_pred):
    """1.0 where the rounded prediction equals the true solution in every entry, else 0.0; per example ``[B]``.

    Example:
    >>> exact_match([[1.0, 0.0], [1.0, 0.0]], [[0.9, 0.0], [0.0, 1.0]]).numpy()
    array([1., 0.], dtype=float32)
    """
    y_pred = tf.convert_to_tensor(y_pred)
    y_true = tf.cast(y_true, y_pred.dtype)
    return tf.cast(tf.reduce_all(tf.equal(tf.round(y_pred), y_true), axis=_entries(y_pred)), y_pred.dtype)


def overlap(y_true, y_pred):
    """The fraction of the true solution's ones that the rounded prediction also has; per example ``[B]``.

    For tour adjacency matrices (each edge twice) it is the fraction of the true tour's edges in the predicted one.

    Example:
    >>> overlap([[1.0, 1.0, 0.0, 0.0]], [[1.0, 0.0, 1.0, 0.0]]).numpy()
    array([0.5], dtype=float32)
    """
    y_pred = tf.convert_to_tensor(y_pred)
    y_true = tf.cast(y_true, y_pred.dtype)
    axes = _entries(y_pred)
    return tf.math.divide_no_nan(tf.reduce_sum(y_true * tf.round(y_pred), axis=axes), tf.reduce_sum(y_true, axis=axes))


def cost_ratio(costs, y_true, y_pred):
    """``<c, y_pred> / <c, y_true>`` per example (the true costs ``c`` of a minimisation; 1.0 = optimal).

    Example:
    >>> cost_ratio([[1.0, 2.0, 4.0]], [[1.0, 1.0, 0.0]], [[1.0, 0.0, 1.0]]).numpy()
    array([1.6666666], dtype=float32)
    """
    y_pred = tf.convert_to_tensor(y_pred)
    costs = tf.cast(costs, y_pred.dtype)
    axes = _entries(y_pred)
    return tf.reduce_sum(costs * y_pred, axis=axes) / tf.reduce_sum(costs * tf.cast(y_true, y_pred.dtype), axis=axes)


@keras.saving.register_keras_serializable(package="identity_tf")
class ExactMatch(keras.metrics.MeanMetricWrapper):
    """Keras metric: the fraction of examples whose rounded prediction equals the true solution (:func:`exact_match`).

    Example:
    >>> metric = ExactMatch()
    >>> metric.update_state([[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]])
    >>> float(metric.result())
    0.5
    """

    def __init__(self, name="exact_match", dtype=None):
        super().__init__(exact_match, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="identity_tf")
class Overlap(keras.metrics.MeanMetricWrapper):
    """Keras metric: the mean of :func:`overlap` (the fraction of the true solution's ones that are predicted)."""

    def __init__(self, name="overlap", dtype=None):
        super().__init__(overlap, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"Argument `k` must be a positive integer. Received: k={k!r}")
    return k


def recall_at_k_per_query(relevance, scores, k: int = 1, valid=None):
    """Per query: 1 if a relevant item is among the ``k`` highest-ranked valid items, else 0 (paper eq. 25).

    Returns:
        ``(hits [Q], has_relevant [Q])``, both in the scores' dtype.
    """
    k = _check_k(k)
    relevance, scores, valid = retrieval.check_inputs(relevance, scores, valid, "recall_at_k")
    scores, relevance = retrieval.mask_database(scores, relevance, valid)
    scores = tf.where(scores == 0, tf.zeros_like(scores), scores)  # -0.0 ties with +0.0, as in Ranking
    num_database = tf.shape(scores)[-1]
    # top_k keeps ties in index order, which is Ranking's tie-break
    _, top = tf.math.top_k(scores, k=tf.minimum(k, num_database), sorted=True)  # [Q, k]
    hits = tf.reduce_max(tf.gather(relevance, top, batch_dims=1), axis=-1)
    has_relevant = tf.cast(tf.reduce_sum(relevance, axis=-1) > 0, scores.dtype)
    return hits * has_relevant, has_relevant


def recall_at_k(relevance, scores, k: int = 1, valid=None) -> tf.Tensor:
    """Recall at K, paper eq. 25, averaged over the queries (those with a relevant item).

    Args:
        relevance: ``[Q, N]`` in {0, 1}.
        scores: ``[Q, N]``, higher = more similar.
        k: K >= 1.
        valid: Optional bool mask broadcastable to ``[Q, N]``.

    Example:
    >>> import identity_tf as itf
    >>> scores = [[0.9, 0.2, 0.5], [0.1, 0.8, 0.3]]
    >>> relevance = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    >>> float(itf.metrics.recall_at_k(relevance, scores, k=1)), float(itf.metrics.recall_at_k(relevance, scores, k=2))
    (0.5, 1.0)
    """
    hits, has_relevant = recall_at_k_per_query(relevance, scores, k=k, valid=valid)
    return tf.math.divide_no_nan(tf.reduce_sum(hits), tf.reduce_sum(has_relevant))


def average_precision_per_query(relevance, scores, valid=None):
    """Per query: ``AP = 1/|rel| sum_{i in rel} (relevant items ranked at or above i) / rk_i``.

    Returns:
        ``(average_precision [Q], has_relevant [Q])``, both in the scores' dtype (AP is 0 without relevant items).
    """
    relevance, scores, valid = retrieval.check_inputs(relevance, scores, valid, "mean_average_precision")
    scores, relevance = retrieval.mask_database(scores, relevance, valid)
    ranks = retrieval._RANKER(scores)
    precision = tf.math.divide_no_nan(retrieval.ranks_among_relevant(ranks, relevance), ranks)
    counts = tf.reduce_sum(relevance, axis=-1)
    return tf.math.divide_no_nan(tf.reduce_sum(precision, axis=-1), counts), tf.cast(counts > 0, scores.dtype)


def mean_average_precision(relevance, scores, valid=None) -> tf.Tensor:
    """Mean average precision over the queries that have a relevant item.

    Example:
    >>> import identity_tf as itf
    >>> scores = [[0.9, 0.2, 0.5, 0.1]]  # relevant items ranked 2nd and 3rd
    >>> round(float(itf.metrics.mean_average_precision([[0.0, 1.0, 1.0, 0.0]], scores)), 4)  # (1/2 + 2/3) / 2
    0.5833
    """
    average_precision, has_relevant = average_precision_per_query(relevance, scores, valid=valid)
    return tf.math.divide_no_nan(tf.reduce_sum(average_precision), tf.reduce_sum(has_relevant))


class _QueryMean(keras.metrics.Metric):
    """Mean of a per-query score over all queries seen (with a relevant item), accumulated over batches.

    ``update_state(y_true, y_pred, sample_weight=None)``: ``y_true`` is ``relevance`` or a tuple ``(relevance, valid)``,
    ``y_pred`` the scores, ``sample_weight`` optional per-query weights ``[Q]``.
    """

    def __init__(self, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="count")

    def per_query(self, relevance, scores, valid):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        relevance, valid = retrieval.split_targets(y_true)
        values, present = self.per_query(relevance, tf.cast(y_pred, self.dtype), valid)
        if sample_weight is not None:
            present = present * tf.cast(tf.reshape(sample_weight, [-1]), self.dtype)
        self.total.assign_add(tf.reduce_sum(values * present))
        self.count.assign_add(tf.reduce_sum(present))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package="identity_tf")
class RecallAtK(_QueryMean):
    """Keras metric: recall at K (paper eq. 25) over all queries seen since the last reset.

    Args:
        k: K >= 1.
        name, dtype: As for every Keras metric.

    Example:
    >>> import identity_tf as itf
    >>> metric = itf.metrics.RecallAtK(k=1)
    >>> metric.update_state([[0.0, 0.0, 1.0]], [[0.9, 0.2, 0.5]])
    >>> metric.update_state([[0.0, 1.0, 0.0]], [[0.1, 0.8, 0.3]])
    >>> float(metric.result())
    0.5
    """

    def __init__(self, k: int = 1, name=None, dtype=None):
        self.k = _check_k(k)
        super().__init__(name=name or f"recall_at_{k}", dtype=dtype)

    def per_query(self, relevance, scores, valid):
        return recall_at_k_per_query(relevance, scores, k=self.k, valid=valid)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


@keras.saving.register_keras_serializable(package="identity_tf")
class MeanAveragePrecision(_QueryMean):
    """Keras metric: mean average precision over all queries seen since the last reset.

    Example:
    >>> import identity_tf as itf
    >>> metric = itf.metrics.MeanAveragePrecision()
    >>> metric.update_state([[0.0, 1.0, 1.0, 0.0]], [[0.9, 0.2, 0.5, 0.1]])
    >>> round(float(metric.result()), 4)
    0.5833
    """

    def __init__(self, name="mean_average_precision", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def per_query(self, relevance, scores, valid):
        return average_precision_per_query(relevance, scores, valid=valid)
