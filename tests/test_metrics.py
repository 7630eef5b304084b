"""Retrieval metrics against brute-force nearest neighbours in numpy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf

RNG = np.random.default_rng(25)


def retrieval_set(n=40, dim=4, classes=6):
    labels = RNG.integers(0, classes, size=n)
    centres = RNG.normal(size=(classes, dim))
    embeddings = centres[labels] + 0.9 * RNG.normal(size=(n, dim))
    return embeddings.astype(np.float32), labels


def oracle_neighbours(embeddings):
    """For each query, the other items from nearest to farthest (Euclidean, brute force)."""
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=-1)
    return [[j for j in np.argsort(distances[q], kind="stable") if j != q] for q in range(len(embeddings))]


def oracle_recall_at_k(labels, neighbours, k):
    hits = [
        labels[q] in labels[nearest[:k]] for q, nearest in enumerate(neighbours) if np.any(labels[nearest] == labels[q])
    ]
    return np.mean(hits)


def oracle_average_precision(labels, neighbours):
    values = []
    for q, nearest in enumerate(neighbours):
        relevant = labels[nearest] == labels[q]
        if relevant.any():
            precision_at = np.cumsum(relevant) / np.arange(1, len(nearest) + 1)
            values.append(precision_at[relevant].mean())
    return np.mean(values)


def scores_and_relevance(embeddings, labels):
    # higher = more similar: negative squared distance ranks like the Euclidean distance
    scores = -np.square(embeddings[:, None] - embeddings[None]).sum(-1)
    relevance = (labels[:, None] == labels[None]).astype(np.float32)
    return relevance, scores.astype(np.float32), ~np.eye(len(labels), dtype=bool)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_recall_at_k_against_brute_force_nearest_neighbours(k):
    embeddings, labels = retrieval_set()
    relevance, scores, not_self = scores_and_relevance(embeddings, labels)
    value = float(itf.metrics.recall_at_k(relevance, scores, k=k, valid=not_self))
    expected = oracle_recall_at_k(labels, oracle_neighbours(embeddings), k)
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_mean_average_precision_against_brute_force():
    embeddings, labels = retrieval_set()
    relevance, scores, not_self = scores_and_relevance(embeddings, labels)
    value = float(itf.metrics.mean_average_precision(relevance, scores, valid=not_self))
    np.testing.assert_allclose(value, oracle_average_precision(labels, oracle_neighbours(embeddings)), rtol=1e-5)


def test_queries_without_relevant_items_are_left_out():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3], [0.3, 0.2, 0.1]], np.float32)
    relevance = np.array([[0, 0, 1], [0, 1, 0], [0, 0, 0]], np.float32)
    assert float(itf.metrics.recall_at_k(relevance, scores, k=1)) == 0.5
    np.testing.assert_allclose(float(itf.metrics.mean_average_precision(relevance, scores)), (0.5 + 1.0) / 2)


@pytest.mark.parametrize("jit", [False, True])
def test_ties_are_ranked_by_position_like_the_ranking_solver(jit):
    scores = np.tile(np.array([0.5, 0.5, -0.0, 0.0, 0.5], np.float32), 20)[None]  # [1, 100], many ties
    ranks = itf.solvers.Ranking()(scores).numpy()[0]
    np.testing.assert_array_equal(ranks[:5], [1, 2, 61, 62, 3])  # -0.0 ties with +0.0, by position
    one_relevant_each = np.eye(100, dtype=np.float32)  # query q: only item q is relevant
    for k in (1, 2, 3, 60, 61, 62):
        fn = tf.function(lambda r, s, k=k: itf.metrics.recall_at_k_per_query(r, s, k=k)[0], jit_compile=jit)
        hits = fn(one_relevant_each, np.repeat(scores, 100, axis=0)).numpy()
        np.testing.assert_array_equal(hits, ranks <= k)


def test_k_larger_than_the_database_and_xla():
    embeddings, labels = retrieval_set(n=10)
    relevance, scores, not_self = scores_and_relevance(embeddings, labels)
    assert float(itf.metrics.recall_at_k(relevance, scores, k=50, valid=not_self)) == 1.0
    compiled = tf.function(lambda r, s, v: itf.metrics.recall_at_k(r, s, k=2, valid=v), jit_compile=True)
    eager = itf.metrics.recall_at_k(relevance, scores, k=2, valid=not_self)
    assert float(compiled(relevance, scores, not_self)) == float(eager)


def test_keras_metrics_accumulate_over_batches():
    embeddings, labels = retrieval_set()
    relevance, scores, not_self = scores_and_relevance(embeddings, labels)
    recall, average_precision = itf.metrics.RecallAtK(k=2), itf.metrics.MeanAveragePrecision()
    for rows in (slice(0, 15), slice(15, 40)):
        recall.update_state((relevance[rows], not_self[rows]), scores[rows])
        average_precision.update_state((relevance[rows], not_self[rows]), scores[rows])
    neighbours = oracle_neighbours(embeddings)
    np.testing.assert_allclose(float(recall.result()), oracle_recall_at_k(labels, neighbours, 2), rtol=1e-6)
    np.testing.assert_allclose(
        float(average_precision.result()), oracle_average_precision(labels, neighbours), rtol=1e-5
    )
    assert recall.name == "recall_at_2"
    recall.reset_state()
    assert float(recall.result()) == 0.0


def test_keras_metric_sample_weight_and_config():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]], np.float32)
    relevance = np.array([[0, 0, 1], [0, 1, 0]], np.float32)
    metric = itf.metrics.RecallAtK(k=1)
    metric.update_state(relevance, scores, sample_weight=[1.0, 3.0])  # hits 0 and 1
    assert float(metric.result()) == 0.75
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert restored.k == 1 and restored.name == "recall_at_1"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: itf.metrics.recall_at_k([[1.0, 0.0]], [[0.1, 0.2]], k=0), "k=0"),
        (lambda: itf.metrics.RecallAtK(k=1.5), "k=1.5"),
        (lambda: itf.metrics.mean_average_precision([[1.0, 0.0]], [0.1, 0.2]), "scores.shape"),
    ],
)
def test_bad_input_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
