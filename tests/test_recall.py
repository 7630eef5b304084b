"""Rank-based retrieval losses (recall "loglog", paper eq. 26; 1 - AP) against hand-worked and numpy oracles.

The oracles count directly: the rank of item i is 1 + #(items scored above i), and rk(w)_i - rk(w+)_i is the
number of *irrelevant* items scored above i. Scores are random floats (no ties) unless a test says otherwise.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf

RNG = np.random.default_rng(12)


def oracle_ranks(scores):
    """[Q, N] ranks by counting (no ties): 1 + #(j with s_j > s_i)."""
    return 1 + (scores[:, None, :] > scores[:, :, None]).sum(-1)


def oracle_irrelevant_above(scores, relevance):
    """[Q, N]: number of irrelevant items scored above each item."""
    above = scores[:, None, :] > scores[:, :, None]  # [q, i, j]: j above i
    return (above & (relevance[:, None, :] == 0)).sum(-1)


def weight(x):
    return np.log1p(np.log1p(x))


def weight_derivative(x):
    return 1.0 / ((1.0 + x) * (1.0 + np.log1p(x)))


def value_and_grad(loss, relevance, scores, **kwargs):
    scores = tf.constant(scores, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(scores)
        value = loss(tf.constant(relevance, tf.float32), scores, **kwargs)
    return float(value), tape.gradient(value, scores).numpy()


def random_problem(num_queries=5, num_database=9):
    scores = RNG.uniform(-1, 1, size=(num_queries, num_database)).astype(np.float32)
    relevance = (RNG.uniform(size=scores.shape) < 0.35).astype(np.float32)
    relevance[:, 0] = 1.0  # every query has a relevant item
    return relevance, scores


# ------------------------------------------------------------------------------------------------ hand-worked
def test_recall_loss_tiny_example_by_hand():
    # ranks 1, 3, 2, 4; relevant items 1 and 2 each have exactly one irrelevant item (item 0) above them
    scores = np.array([[0.9, 0.2, 0.5, 0.1]], np.float32)
    relevance = np.array([[0.0, 1.0, 1.0, 0.0]], np.float32)
    value, grad = value_and_grad(itf.losses.RecallLoss(), relevance, scores)
    np.testing.assert_allclose(value, np.log(1 + np.log(2.0)), rtol=1e-6)
    # Identity: d/dscores = -N * dl/drk; dl/drk_i = w'(1) / |rel| = 1 / (2 (1 + log 2)) / 2 for i in {1, 2}
    expected = -4 * (1 / (2 * (1 + np.log(2.0)))) / 2
    np.testing.assert_allclose(grad, [[0.0, expected, expected, 0.0]], rtol=1e-6)


def test_recall_loss_is_zero_when_relevant_items_lead():
    scores = np.array([[0.1, 0.9, 0.8, -0.5]], np.float32)
    relevance = np.array([[0.0, 1.0, 1.0, 0.0]], np.float32)
    value, grad = value_and_grad(itf.losses.RecallLoss(), relevance, scores)
    assert value == 0.0
    # w'(0) = 1: the top relevant items still get Identity's push, -N / |rel|
    np.testing.assert_allclose(grad, [[0.0, -2.0, -2.0, 0.0]], rtol=1e-6)


# -------------------------------------------------------------------------------------------- numpy oracles
@pytest.mark.parametrize("normalization", ["positives", "queries"])
def test_recall_loss_value_and_identity_gradient_against_counting_oracle(normalization):
    relevance, scores = random_problem()
    value, grad = value_and_grad(itf.losses.RecallLoss(normalization=normalization), relevance, scores)
    above = oracle_irrelevant_above(scores, relevance)
    counts = relevance.sum(-1)
    if normalization == "positives":  # sum over (query, relevant) pairs / number of relevant items
        per_pair = relevance / counts.sum()
    else:  # eq. 26 per query, averaged over queries
        per_pair = relevance / counts[:, None] / len(scores)
    np.testing.assert_allclose(value, (per_pair * weight(above)).sum(), rtol=1e-5)
    np.testing.assert_allclose(grad, -scores.shape[1] * per_pair * weight_derivative(above), rtol=1e-5, atol=1e-7)


def test_normalizations_agree_when_queries_have_equal_relevant_counts():
    scores = RNG.uniform(-1, 1, size=(4, 8)).astype(np.float32)
    relevance = np.zeros_like(scores)
    for q in range(4):
        relevance[q, RNG.choice(8, size=3, replace=False)] = 1.0
    a, grad_a = value_and_grad(itf.losses.RecallLoss(normalization="positives"), relevance, scores)
    b, grad_b = value_and_grad(itf.losses.RecallLoss(normalization="queries"), relevance, scores)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(grad_a, grad_b, rtol=1e-6)


@pytest.mark.parametrize("lam", [0.2, 2.0])
def test_recall_loss_blackbox_gradient_against_oracle(lam):
    relevance, scores = random_problem(num_queries=4, num_database=10)
    value, grad = value_and_grad(itf.losses.RecallLoss(gradient=itf.gradients.Blackbox(lam=lam)), relevance, scores)
    n = scores.shape[1]
    above = oracle_irrelevant_above(scores, relevance)
    upstream = n * relevance / relevance.sum() * weight_derivative(above)  # dl/dy for normalised ranks y = rk / N
    ranks, perturbed_ranks = oracle_ranks(scores) / n, oracle_ranks(scores + lam * upstream) / n
    expected = -(ranks - perturbed_ranks) / lam  # BB for a "min" solver
    np.testing.assert_allclose(value, (relevance / relevance.sum() * weight(above)).sum(), rtol=1e-5)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
    if lam == 2.0:  # BB reaches irrelevant items too (paper B.3), Identity does not
        assert np.any(expected[relevance == 0] != 0)


def test_informed_margin_shifts_relevant_scores_down():
    relevance, scores = random_problem()
    alpha = 0.3
    value, _ = value_and_grad(itf.losses.RecallLoss(alpha=alpha), relevance, scores)
    shifted = scores - alpha * (relevance - 0.5)  # the original code's margin
    above = oracle_irrelevant_above(shifted, relevance)
    np.testing.assert_allclose(value, (relevance / relevance.sum() * weight(above)).sum(), rtol=1e-5)
    plain, _ = value_and_grad(itf.losses.RecallLoss(), relevance, scores)
    assert value > plain


def test_average_precision_loss_value_and_identity_gradient():
    relevance, scores = random_problem()
    value, grad = value_and_grad(itf.losses.AveragePrecisionLoss(), relevance, scores)
    ranks = oracle_ranks(scores)
    among_relevant = 1 + ((scores[:, None, :] > scores[:, :, None]) & (relevance[:, None, :] == 1)).sum(
        -1
    )  # relevant items above i, plus i itself
    counts = relevance.sum(-1, keepdims=True)
    average_precision = (relevance * among_relevant / ranks).sum(-1) / counts[:, 0]
    np.testing.assert_allclose(value, np.mean(1 - average_precision), rtol=1e-5)
    # d(1 - AP_q)/drk_i = rk+_i / rk_i^2 / |rel_q|, averaged over Q; Identity: -N * that
    expected = -scores.shape[1] * relevance * among_relevant / ranks**2 / counts / len(scores)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------- database masks
def test_valid_mask_equals_loss_without_the_masked_entries():
    relevance, scores = random_problem(num_queries=4, num_database=9)
    valid = RNG.uniform(size=scores.shape) < 0.7
    valid[:, 0] = True
    value, grad = value_and_grad(itf.losses.RecallLoss(), relevance, scores, valid=valid)
    # Oracle: drop the invalid entries per query, then count.
    totals, count = 0.0, 0.0
    expected_grad = np.zeros_like(scores)
    for q in range(len(scores)):
        keep = np.flatnonzero(valid[q])
        s, r = scores[q : q + 1, keep], relevance[q : q + 1, keep]
        above = oracle_irrelevant_above(s, r)[0]
        totals += (r[0] * weight(above)).sum()
        count += r.sum()
        expected_grad[q, keep] = r[0] * weight_derivative(above)
    np.testing.assert_allclose(value, totals / count, rtol=1e-5)
    # N in the gradient is the full row length (masked entries included), as documented
    np.testing.assert_allclose(grad, -scores.shape[1] * expected_grad / count, rtol=1e-5, atol=1e-7)
    assert np.all(grad[~valid] == 0)


def test_excluding_the_query_itself_from_square_batch_scores():
    embeddings = RNG.normal(size=(8, 3)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    scores = embeddings @ embeddings.T  # the query is its own best match
    relevance = (labels[:, None] == labels[None, :]).astype(np.float32)
    not_self = ~np.eye(8, dtype=bool)
    value, _ = value_and_grad(itf.losses.RecallLoss(), relevance, scores, valid=not_self)
    totals, count = 0.0, 0.0
    for q in range(8):
        keep = np.flatnonzero(not_self[q])
        above = oracle_irrelevant_above(scores[q : q + 1, keep], relevance[q : q + 1, keep])[0]
        totals += (relevance[q, keep] * weight(above)).sum()
        count += relevance[q, keep].sum()
    np.testing.assert_allclose(value, totals / count, rtol=1e-5)
    # the tuple convention of y_true gives the same value (for compile(loss=...) pipelines)
    assert float(itf.losses.RecallLoss()((relevance, not_self), scores)) == pytest.approx(value, rel=1e-6)


def test_queries_without_relevant_items_contribute_nothing():
    relevance, scores = random_problem(num_queries=3)
    relevance[1] = 0.0
    for normalization in ("positives", "queries"):
        loss = itf.losses.RecallLoss(normalization=normalization)
        full = float(loss(relevance, scores))
        without = float(loss(relevance[[0, 2]], scores[[0, 2]]))
        np.testing.assert_allclose(full, without, rtol=1e-6)


# ---------------------------------------------------------------------------------------- graphs, API, errors
@pytest.mark.parametrize("gradient", ["identity", itf.gradients.Blackbox(lam=1.0)])
def test_eager_graph_and_xla_agree(gradient):
    relevance, scores = random_problem(num_queries=6, num_database=16)
    valid = RNG.uniform(size=scores.shape) < 0.8
    loss = itf.losses.RecallLoss(gradient=gradient, alpha=0.1)

    def run(relevance, scores, valid):
        with tf.GradientTape() as tape:
            tape.watch(scores)
            value = loss(relevance, scores, valid=valid)
        return value, tape.gradient(value, scores)

    args = [tf.constant(relevance), tf.constant(scores), tf.constant(valid)]
    eager = run(*args)
    for compiled in (tf.function(run), tf.function(run, jit_compile=True)):
        out = compiled(*args)
        np.testing.assert_allclose(out[0].numpy(), eager[0].numpy(), rtol=1e-6)
        np.testing.assert_allclose(out[1].numpy(), eager[1].numpy(), rtol=1e-6, atol=1e-7)


def test_stochastic_gradient_method_runs():
    relevance, scores = random_problem()
    loss = itf.losses.RecallLoss(gradient=itf.gradients.Perturbed(sigma=0.1, num_samples=3), seed=3)
    value, grad = value_and_grad(loss, relevance, scores)
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.any(grad != 0)


@pytest.mark.parametrize(
    "loss",
    [
        itf.losses.RecallLoss(gradient=itf.gradients.Blackbox(lam=0.2), alpha=0.1, normalization="queries"),
        itf.losses.AveragePrecisionLoss(gradient="identity", alpha=0.05),
    ],
)
def test_config_round_trip(loss):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert restored.gradient == loss.gradient


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: itf.losses.RecallLoss(normalization="mean"), ValueError, "normalization='mean'"),
        (lambda: itf.losses.RecallLoss(alpha=-1.0), ValueError, "alpha=-1.0"),
        (lambda: itf.losses.RecallLoss(gradient="sgd"), ValueError, "gradient='sgd'"),
        (lambda: itf.losses.RecallLoss()(np.ones((2, 3)), np.ones(3)), ValueError, "scores.shape"),
        (lambda: itf.losses.RecallLoss()(np.ones((2, 4)), np.ones((2, 3))), ValueError, "relevance.shape"),
        (lambda: itf.losses.RecallLoss()(np.full((1, 3), 2.0), np.ones((1, 3))), ValueError, "in {0, 1}"),
        (lambda: itf.losses.RecallLoss()(np.ones((1, 3)), np.ones((1, 3)), valid=np.ones(4)), ValueError, "valid"),
        (lambda: itf.losses.RecallLoss()((np.ones((1, 3)),) * 3, np.ones((1, 3))), ValueError, "tuple of 3"),
    ],
)
def test_bad_input_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
