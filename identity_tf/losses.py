"""Losses on solver outputs."""

from __future__ import annotations

import keras
import tensorflow as tf

from identity_tf import _retrieval as retrieval
from identity_tf import gradients as gradients_lib
from identity_tf import noise as noise_lib
from identity_tf.solvers.ranking import Ranking


def hamming(y_true, y_pred, average: bool = False):
    """``sum |y_pred - y_true|`` over the non-batch axes (their mean with ``average``), per example ``[B]``.

    Example:
    >>> float(hamming([[1.0, 0.0, 1.0, 0.0]], [[1.0, 1.0, 0.0, 0.0]])[0])
    2.0
    """
    y_pred = tf.convert_to_tensor(y_pred)
    y_true = tf.cast(y_true, y_pred.dtype)
    reduce = tf.reduce_mean if average else tf.reduce_sum
    return reduce(tf.abs(y_pred - y_true), axis=list(range(1, y_pred.shape.rank)))


@keras.saving.register_keras_serializable(package="identity_tf")
class HammingLoss(keras.losses.Loss):
    """Hamming (L1) distance between a 0/1 solution and the true one, per example: ``sum |y_pred - y_true|`` over
    all non-batch axes (``mean`` with ``average=True``), averaged over the batch by Keras.

    The default sums over entries, as the Blackbox-Backprop code does: BB perturbs the costs by
    ``lam * dl/dy``, so averaging over entries would shrink its perturbation by the number of entries.

    Example:
    >>> import identity_tf as itf
    >>> float(itf.losses.HammingLoss()([[1.0, 0.0, 1.0, 0.0]], [[1.0, 1.0, 0.0, 0.0]]))
    2.0
    >>> float(itf.losses.HammingLoss(average=True)([[1.0, 0.0, 1.0, 0.0]], [[1.0, 1.0, 0.0, 0.0]]))
    0.5
    """

    def __init__(self, average: bool = False, name="hamming", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.average = bool(average)

    def call(self, y_true, y_pred):
        return hamming(y_true, y_pred, average=self.average)

    def get_config(self):
        return {**super().get_config(), "average": self.average}


# --------------------------------------------------------------------------------- retrieval (rank-based) losses
class _RankLoss(keras.losses.Loss):
    """Shared machinery of the rank-based losses: informed margin, database mask, ranks through a gradient
    method. ``y_true`` is ``relevance [Q, N]`` or a tuple ``(relevance, valid)``; ``y_pred`` is ``scores [Q, N]``."""

    def __init__(self, gradient="identity", alpha=0.0, seed=None, name=None, reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.gradient = gradients_lib.get(gradient)
        self.alpha = noise_lib._check_alpha(alpha)
        self.seed = seed
        self.seed_generator = (
            keras.random.SeedGenerator(seed) if self.gradient.stochastic and seed is not None else None
        )

    def __call__(self, y_true, y_pred, sample_weight=None, valid=None):
        """``valid`` (bool, broadcastable to ``[Q, N]``): False marks entries that are not in a query's database."""
        if valid is not None:
            y_true = (retrieval.split_targets(y_true)[0], valid)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def ranks(self, relevance, scores, valid):
        """Ranks ``1..N`` of the (margin-shifted, masked) scores with the gradient method's backward pass."""
        # Informed margin of the original code, scores - alpha * (relevance - 0.5): relevant items must win by
        # alpha. (For ranking, relevant items should get small ranks, i.e. they act like the chosen items of a
        # "max" solver, hence sense="max" here.)
        scores = noise_lib.informed_margin(scores, relevance, self.alpha, sense="max")
        scores, relevance = retrieval.mask_database(scores, relevance, valid)
        # Normalised ranks (0, 1], scaled back by N: the gradient method sees the original's normalised ranker,
        # which sets BB's effective lambda (lam = 0.2 in the paper).
        normalised = self.gradient(_NORMALISED_RANKER, scores, seed=self.seed_generator, training=True)
        return normalised * tf.cast(tf.shape(scores)[-1], scores.dtype), relevance

    def get_config(self):
        return {
            **super().get_config(),
            "gradient": keras.saving.serialize_keras_object(self.gradient),
            "alpha": self.alpha,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["gradient"] = gradients_lib.get(config["gradient"])
        return cls(**config)


_NORMALISED_RANKER = Ranking(normalize=True)


@keras.saving.register_keras_serializable(package="identity_tf")
class RecallLoss(_RankLoss):
    """Recall loss "loglog" of Rolinek et al. (2020) on ranks from :class:`identity_tf.solvers.Ranking`.

    Per query (paper eq. 26): ``1/|rel| sum_{i in rel} log(1 + log(1 + rk(w)_i - rk(w+)_i))``, where ``rk(w)``
    ranks the query's scores over its whole database (1 = most similar) through the chosen gradient method and
    ``rk(w+)_i`` is the rank of ``i`` among the relevant items only. ``rk(w) - rk(w+)`` counts the irrelevant
    items ranked above ``i``.

    Choices, following the original ``blackbox_backprop/recall.py``:

    * ``rk(w+)`` is computed without a gradient (through Identity, its gradient would cancel ``rk``'s exactly).
    * The ranker returns ranks normalised to ``(0, 1]`` (divided by ``N``, the row length) and the loss scales
      them back by ``N`` (the original multiplies by its number of score rows, which is ``N`` for its square
      batch scores). The gradient method therefore sees ``dl/dy = N dl/drk``: this sets BB's effective lambda
      (``Blackbox(lam=0.2)`` in the paper) and scales Identity's update by ``N``.
    * ``alpha`` is the informed margin inside the loss, ``scores - alpha * (relevance - 0.5)`` (default 0). The
      noise-induced margin and projections belong in the model, before the loss (``NoiseMarginLayer``,
      ``ProjectionLayer``), as for every solver.
    * ``normalization="positives"`` (default) divides the sum over all (query, relevant item) pairs by the total
      number of relevant items, as the original does (its division sets the size of ``dl/dy`` and hence BB's
      effective lambda); ``"queries"`` averages eq. 26 over the queries. Both are eq. 26 averaged over queries
      when every query has the same number of relevant items. Queries without relevant items contribute 0
      (``"queries"`` leaves them out of the average).

    Database entries with ``valid == False`` (the query itself, empty batch-memory slots) are moved below every
    valid entry and made irrelevant: the loss value is the loss over the valid entries only (``N`` above stays
    the full row length). ``call`` returns per-query values whose mean is the loss; Keras averages them (under
    ``tf.distribute``, per replica and then over replicas). Half-precision scores are ranked in float32.

    Reference: Rolinek et al., "Optimizing Rank-based Metrics with Blackbox Differentiation", CVPR 2020; Sahoo
    et al., ICLR 2023, section 4.3 and eq. 26.

    Args:
        gradient: Gradient method for the ranks: "identity" (default), "blackbox", ... or an object such as
            ``itf.gradients.Blackbox(lam=0.2)`` (the paper's retrieval lambda; the name "blackbox" gives the
            library default lam = 20).
        alpha: Informed margin alpha >= 0.
        normalization: "positives" or "queries" (see above).
        seed: Seed of stochastic gradient methods (I-MLE, perturbed); None draws fresh noise each call.
        name, reduction: As for every Keras loss.

    Call arguments:
        y_true: ``relevance [Q, N]`` in {0, 1}, or a tuple ``(relevance, valid)``.
        y_pred: ``scores [Q, N]``, higher = more similar.
        sample_weight: Optional per-query weights ``[Q]``.
        valid: Optional bool mask broadcastable to ``[Q, N]``; False leaves an entry out of a query's database.

    Example:
    >>> import numpy as np
    >>> import identity_tf as itf
    >>> scores = np.array([[0.9, 0.2, 0.5, 0.1]], "float32")  # ranks 1, 3, 2, 4
    >>> relevance = np.array([[0.0, 1.0, 1.0, 0.0]], "float32")  # one irrelevant item above each relevant one
    >>> round(float(itf.losses.RecallLoss()(relevance, scores)), 4)  # log(1 + log 2)
    0.5266
    """

    NORMALIZATIONS = ("positives", "queries")

    def __init__(
        self,
        gradient="identity",
        alpha: float = 0.0,
        normalization: str = "positives",
        seed=None,
        name: str = "recall_loss",
        reduction="sum_over_batch_size",
        **kwargs,
    ):
        super().__init__(gradient=gradient, alpha=alpha, seed=seed, name=name, reduction=reduction, **kwargs)
        if normalization not in self.NORMALIZATIONS:
            raise ValueError(
                f"Argument `normalization` must be one of {self.NORMALIZATIONS}. Received: normalization={normalization!r}"
            )
        self.normalization = normalization

    def call(self, y_true, y_pred):
        relevance, valid = retrieval.split_targets(y_true)
        relevance, scores, valid = retrieval.check_inputs(relevance, y_pred, valid, "RecallLoss")
        ranks, relevance = self.ranks(relevance, scores, valid)
        # rk - rk+ = irrelevant items ranked above each relevant one; 0 for irrelevant items
        above = (ranks - retrieval.ranks_among_relevant(ranks, relevance)) * relevance
        # Exact integers up to the float error of N * (r / N): clamp at 0 in the forward value only
        above = above + tf.stop_gradient(tf.maximum(above, 0.0) - above)
        terms = relevance * tf.math.log1p(tf.math.log1p(above))  # [Q, N]
        totals = tf.reduce_sum(terms, axis=-1)  # [Q]
        counts = tf.reduce_sum(relevance, axis=-1)  # [Q]
        if self.normalization == "queries":
            return retrieval.per_query_mean(tf.math.divide_no_nan(totals, counts), counts)
        num_queries = tf.cast(tf.shape(totals)[0], totals.dtype)
        return tf.math.divide_no_nan(totals * num_queries, tf.reduce_sum(counts))

    def get_config(self):
        return {**super().get_config(), "normalization": self.normalization}


@keras.saving.register_keras_serializable(package="identity_tf")
class AveragePrecisionLoss(_RankLoss):
    """``1 - AP`` per query (the mAP loss of Rolinek et al., 2020), on ranks through a gradient method.

    ``AP = 1/|rel| sum_{i in rel} rk(w+)_i / rk(w)_i`` (precision at each relevant item), ``rk(w+)`` without a
    gradient, ranks and informed margin ``alpha`` as in :class:`RecallLoss`. Averaged over the queries that have
    relevant items. The original ``MapLoss`` scaled its margin by ``|N(0, 1)|`` noise per entry and ranked the
    transposed scores of a multi-label classifier; this is the retrieval form with the deterministic margin.

    Args:
        gradient: Gradient method for the ranks (see :class:`RecallLoss`).
        alpha: Informed margin alpha >= 0.
        seed: Seed of stochastic gradient methods.
        name, reduction: As for every Keras loss.

    Call arguments: as for :class:`RecallLoss`.

    Example:
    >>> import numpy as np
    >>> import identity_tf as itf
    >>> scores = np.array([[0.9, 0.2, 0.5, 0.1]], "float32")  # relevant items at ranks 2 and 3
    >>> relevance = np.array([[0.0, 1.0, 1.0, 0.0]], "float32")
    >>> round(float(itf.losses.AveragePrecisionLoss()(relevance, scores)), 4)  # 1 - (1/2 + 2/3) / 2
    0.4167
    """

    def __init__(self, gradient="identity", alpha: float = 0.0, seed=None, name="average_precision_loss", **kwargs):
        super().__init__(gradient=gradient, alpha=alpha, seed=seed, name=name, **kwargs)

    def call(self, y_true, y_pred):
        relevance, valid = retrieval.split_targets(y_true)
        relevance, scores, valid = retrieval.check_inputs(relevance, y_pred, valid, "AveragePrecisionLoss")
        ranks, relevance = self.ranks(relevance, scores, valid)
        precision = tf.math.divide_no_nan(retrieval.ranks_among_relevant(ranks, relevance), ranks)  # [Q, N]
        counts = tf.reduce_sum(relevance, axis=-1)
        average_precision = tf.math.divide_no_nan(tf.reduce_sum(precision, axis=-1), counts)
        return retrieval.per_query_mean(1.0 - average_precision, counts)


# ----------------------------------------------------------------------------------------- graph matching
@keras.saving.register_keras_serializable(package="identity_tf")
class EdgeMatchingLoss(keras.losses.Loss):
    """Opt-in loss on graph matching's edge matching ``z``: ``weight / 2 * ||z - z*||^2`` per example.

    ``z*`` is the edge matching of the true node matching ``x*``,
    ``z* = itf.solvers.induced_edge_matching(x*, edges1, edges2)`` (``z*[e, f] = x*[i, j] x*[k, l]``).
    The gradient is ``weight * (z - z*)`` (difference form), so with Identity the pairwise costs get
    ``-weight * (z - z*)``: the direction of Blackbox's ``(z(costs') - z(costs)) / lam`` whenever BB's
    perturbed solve returns ``x*``. With a loss on ``x`` only (the paper's Hamming loss), Identity gives the
    pairwise costs no gradient at all; add this loss to train them. For 0/1 ``z``, ``z*`` the value is
    ``weight / 2`` times the Hamming distance.

    Args:
        weight: Weight of the edge term (> 0).

    Example:
    >>> import identity_tf as itf
    >>> float(itf.losses.EdgeMatchingLoss(weight=2.0)([[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 1.0], [0.0, 1.0]]]))
    2.0
    """

    def __init__(self, weight: float = 1.0, name="edge_matching", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ValueError(f"Argument `weight` must be a positive number. Received: weight={weight!r}")
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.cast(y_true, y_pred.dtype)
        return 0.5 * self.weight * tf.reduce_sum(tf.square(y_pred - y_true), axis=list(range(1, y_pred.shape.rank)))

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}
