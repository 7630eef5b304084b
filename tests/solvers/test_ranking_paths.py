"""Ranking's two implementations (double argsort; packed sort + scatter under XLA on CPU) give identical ranks."""

import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf
from identity_tf.solvers import ranking

RNG = np.random.default_rng(3)


def hard_scores(shape, dtype):
    scores = RNG.normal(size=shape).astype(dtype)
    flat = scores.reshape(-1, shape[-1])
    flat[:, ::3] = np.round(flat[:, ::3])  # many ties
    if shape[-1] < 8:
        return scores
    flat[:, :6] = [0.0, -0.0, 0.0, -0.0, np.finfo(dtype).max, np.finfo(dtype).min]  # signed zeros, extremes
    flat[:, 6:8] = [np.finfo(dtype).tiny, -np.finfo(dtype).tiny]
    return flat.reshape(shape)


def oracle(scores):
    """Rank = 1 + #(larger) + #(equal and earlier), by counting (-0.0 == +0.0 in numpy comparisons)."""
    other, this = scores[..., None, :], scores[..., :, None]
    n = scores.shape[-1]
    earlier = np.tril(np.ones((n, n), bool), -1)
    return 1 + ((other > this) | ((other == this) & earlier)).sum(-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 17), (2, 300)])
def test_every_path_matches_the_counting_oracle(shape, dtype):
    scores = hard_scores(shape, dtype)
    expected = oracle(scores)
    solver = itf.solvers.Ranking()
    np.testing.assert_array_equal(solver(scores).numpy(), expected)  # eager: double argsort
    np.testing.assert_array_equal(tf.function(solver)(tf.constant(scores)).numpy(), expected)
    np.testing.assert_array_equal(tf.function(solver, jit_compile=True)(tf.constant(scores)).numpy(), expected)
    negated = tf.where(scores == 0, tf.zeros_like(scores), -scores)
    for compiled in (
        tf.function(ranking.sort_and_scatter_ranks),
        tf.function(ranking.sort_and_scatter_ranks, jit_compile=True),
    ):
        np.testing.assert_array_equal(compiled(negated).numpy(), expected)


def test_the_packed_path_is_picked_only_when_compiling_for_cpu():
    seen = []

    def probe(x):
        seen.append(ranking._compiling_for_cpu(x))
        return x

    x = tf.ones((1, 2))
    probe(x)
    tf.function(probe)(x)
    tf.function(probe, jit_compile=True)(x)
    expected_xla = not tf.config.list_logical_devices("GPU")
    assert seen == [False, False, expected_xla]


def test_normalized_and_single_item_ranks_under_xla():
    compiled = tf.function(itf.solvers.Ranking(normalize=True), jit_compile=True)
    scores = hard_scores((3, 10), np.float32)
    np.testing.assert_allclose(compiled(tf.constant(scores)).numpy(), oracle(scores) / 10.0, rtol=1e-7)
    np.testing.assert_array_equal(compiled(tf.constant([[0.3], [-1.0]])).numpy(), [[1.0], [1.0]])
