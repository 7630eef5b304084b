"""Noise: margin values, informed margin formula, Sum-of-Gamma moments and variants, Gumbel."""

import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf


def test_margin_is_plus_minus_half_alpha_and_balanced():
    costs = tf.zeros((200, 50))
    noisy = itf.noise.margin(costs, alpha=0.4, seed=3).numpy()
    np.testing.assert_allclose(np.abs(noisy), 0.2, rtol=1e-6)
    assert abs((noisy > 0).mean() - 0.5) < 0.02


def test_margin_seeding():
    costs = tf.zeros((4, 8))
    same = [itf.noise.margin(costs, 1.0, seed=7).numpy() for _ in range(2)]
    np.testing.assert_array_equal(same[0], same[1])
    import keras

    gen = keras.random.SeedGenerator(0)
    a, b = itf.noise.margin(costs, 1.0, seed=gen).numpy(), itf.noise.margin(costs, 1.0, seed=gen).numpy()
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="alpha"):
        itf.noise.margin(costs, alpha=-1.0)


def test_informed_margin_formula():
    costs = np.array([[1.0, 2.0, 3.0]], np.float32)
    y = np.array([[1.0, 0.0, 1.0]], np.float32)
    np.testing.assert_allclose(itf.noise.informed_margin(costs, y, 0.5, "min").numpy(), [[1.25, 1.75, 3.25]])
    np.testing.assert_allclose(itf.noise.informed_margin(costs, y, 0.5, "max").numpy(), [[0.75, 2.25, 2.75]])
    with pytest.raises(ValueError, match="sense"):
        itf.noise.informed_margin(costs, y, 0.5, "minimise")
    with pytest.raises(ValueError, match="y_true"):
        itf.noise.informed_margin(costs, y[:, :2], 0.5)


@pytest.mark.parametrize("variant, scale", [("paper", lambda i, k: k / i), ("dvae_notebook", lambda i, k: i / k)])
def test_sum_of_gamma_moments(variant, scale):
    k, tau, s = 10, 10.0, 10
    x = itf.noise.SumOfGamma(k=k, tau=tau, s=s, variant=variant).sample([200_000], seed=0).numpy()
    i = np.arange(1, s + 1)
    # Gamma(shape a, scale b): mean a b, variance a b^2
    mean = tau / k * ((1 / k) * scale(i, k).sum() - np.log(s))
    std = tau / k * np.sqrt(((1 / k) * scale(i, k) ** 2).sum())
    np.testing.assert_allclose(x.mean(), mean, atol=0.03 * max(std, 1))
    np.testing.assert_allclose(x.std(), std, rtol=0.03)


def test_sum_of_gamma_paper_vs_notebook_width():
    # DESIGN.md section 4: std 3.94 (eq. 23) vs 0.62 (the DVAE notebook) at k = tau = s = 10
    paper = itf.noise.SumOfGamma(variant="paper").sample([100_000], seed=1).numpy().std()
    notebook = itf.noise.SumOfGamma(variant="dvae_notebook").sample([100_000], seed=1).numpy().std()
    np.testing.assert_allclose([paper, notebook], [3.94, 0.62], rtol=0.05)


def test_sum_of_gamma_compiles_under_xla():
    noise = itf.noise.SumOfGamma(k=5)
    out = tf.function(lambda seed: noise.sample([3, 4], seed=seed), jit_compile=True)(tf.constant([1, 2]))
    assert out.shape == (3, 4) and np.all(np.isfinite(out.numpy()))


def test_gumbel_moments():
    x = itf.noise.Gumbel().sample([200_000], seed=0).numpy()
    np.testing.assert_allclose(x.mean(), np.euler_gamma, atol=0.02)
    np.testing.assert_allclose(x.std(), np.pi / np.sqrt(6), rtol=0.02)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: itf.noise.SumOfGamma(k=0), "k"),
        (lambda: itf.noise.SumOfGamma(s=0), "s"),
        (lambda: itf.noise.SumOfGamma(tau=0.0), "tau"),
        (lambda: itf.noise.SumOfGamma(variant="rate"), "variant"),
        (lambda: itf.noise.Gumbel(scale=0), "scale"),
        (lambda: itf.noise.get("cauchy"), "noise"),
    ],
)
def test_bad_noise_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
