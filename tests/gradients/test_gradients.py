"""Backward rules against their formulas (exact values)."""

import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf


def grad_of(fn, costs, upstream):
    costs = tf.constant(costs, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(costs)
        y = fn(costs)
        loss = tf.reduce_sum(y * upstream)
    return y.numpy(), tape.gradient(loss, costs).numpy()


RNG = np.random.default_rng(0)
COSTS = RNG.normal(size=(4, 6)).astype(np.float32)
UPSTREAM = RNG.normal(size=(4, 6)).astype(np.float32)


@pytest.mark.parametrize("solver, sign", [(itf.solvers.TopK(k=2), 1.0), (itf.solvers.Ranking(), -1.0)])
def test_identity_is_signed_upstream(solver, sign):
    y, grad = grad_of(lambda c: itf.gradients.identity(solver, c), COSTS, UPSTREAM)
    np.testing.assert_array_equal(grad, sign * UPSTREAM)
    np.testing.assert_array_equal(y, solver(COSTS).numpy())


def test_identity_does_not_call_the_solver_on_backward():
    calls = []

    def cheapest(c):
        calls.append(1)
        return (c == c.min()).astype(float)

    solver = itf.solvers.from_numpy(cheapest, sense="min")
    grad_of(lambda c: itf.gradients.identity(solver, c), COSTS, UPSTREAM)
    assert len(calls) == len(COSTS)  # forward only: one call per instance


def test_identity_through_std_equals_jacobian_transpose_of_std():
    solver = itf.solvers.TopK(k=2)
    _, grad = grad_of(lambda c: itf.gradients.identity(solver, itf.projections.std(c)), COSTS, UPSTREAM)
    # P_std'(w)^T u by hand: with m = w - mean(w), P_std(w) = m / |m|;
    # d/dw = (I - 11^T/n)(I/|m| - m m^T/|m|^3)   (both factors symmetric)
    expected = []
    for w, u in zip(COSTS.astype(np.float64), UPSTREAM.astype(np.float64)):
        n = w.size
        m = w - w.mean()
        r = np.linalg.norm(m)
        jac_norm = np.eye(n) / r - np.outer(m, m) / r**3
        jac_mean = np.eye(n) - np.ones((n, n)) / n
        expected.append(jac_mean @ jac_norm @ u)  # TopK is "max": identity passes +u
    np.testing.assert_allclose(grad, np.array(expected), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lam", [0.5, 3.0, 20.0])
def test_blackbox_formula_max_solver(lam):
    solver = itf.solvers.TopK(k=2)
    y, grad = grad_of(lambda c: itf.gradients.blackbox(solver, c, lam=lam), COSTS, UPSTREAM)
    y_perturbed = solver(COSTS - lam * UPSTREAM).numpy()
    np.testing.assert_allclose(grad, (y - y_perturbed) / lam, rtol=1e-6)


@pytest.mark.parametrize("lam", [0.5, 3.0])
def test_blackbox_formula_min_solver(lam):
    solver = itf.solvers.Ranking()
    y, grad = grad_of(lambda c: itf.gradients.blackbox(solver, c, lam=lam), COSTS, UPSTREAM)
    y_perturbed = solver(COSTS + lam * UPSTREAM).numpy()
    np.testing.assert_allclose(grad, (y_perturbed - y) / lam, rtol=1e-6)


def test_blackbox_uses_project_to_domain():
    seen = []

    class Clamped(itf.solvers.Argmax):
        def project_to_domain(self, costs):
            seen.append(True)
            return tf.maximum(costs, 0.0)

    solver = Clamped()
    y, grad = grad_of(lambda c: itf.gradients.blackbox(solver, c, lam=2.0), COSTS, UPSTREAM)
    expected = (y - solver(np.maximum(COSTS - 2.0 * UPSTREAM, 0)).numpy()) / 2.0
    np.testing.assert_allclose(grad, expected)
    assert seen


@pytest.mark.parametrize("num_samples", [1, 3])
def test_imle_formula_with_fixed_noise(num_samples):
    solver = itf.solvers.TopK(k=2)
    noise = itf.noise.SumOfGamma(k=2, tau=1.0, s=5)
    seed = tf.constant([3, 4], tf.int64)
    lam = 10.0
    y, grad = grad_of(
        lambda c: itf.gradients.imle(solver, c, lam=lam, noise=noise, num_samples=num_samples, seed=seed),
        COSTS,
        UPSTREAM,
    )
    eps = noise.sample([num_samples, *COSTS.shape], seed=seed).numpy()
    samples = np.stack([solver(COSTS + e).numpy() for e in eps])
    targets = np.stack([solver(COSTS - lam * UPSTREAM + e).numpy() for e in eps])
    np.testing.assert_allclose(y, samples.mean(0), rtol=1e-6)
    np.testing.assert_allclose(grad, (samples - targets).mean(0) / lam, rtol=1e-5, atol=1e-7)


def test_imle_min_solver_mirrors_signs():
    solver = itf.solvers.Ranking()
    noise = itf.noise.Gumbel()
    seed = tf.constant([1, 2], tf.int64)
    y, grad = grad_of(lambda c: itf.gradients.imle(solver, c, lam=2.0, noise=noise, seed=seed), COSTS, UPSTREAM)
    eps = noise.sample([1, *COSTS.shape], seed=seed).numpy()[0]
    y_expected = solver(COSTS - eps).numpy()
    target = solver(COSTS - eps + 2.0 * UPSTREAM).numpy()
    np.testing.assert_array_equal(y, y_expected)
    np.testing.assert_allclose(grad, (target - y_expected) / 2.0, rtol=1e-6)


@pytest.mark.parametrize("noise", ["normal", "gumbel"])
def test_perturbed_formula(noise):
    solver = itf.solvers.Argmax()
    seed = tf.constant([7, 8], tf.int64)
    sigma, num_samples = 0.5, 5
    y, grad = grad_of(
        lambda c: itf.gradients.perturbed(solver, c, sigma=sigma, num_samples=num_samples, noise=noise, seed=seed),
        COSTS,
        UPSTREAM,
    )
    shape = [num_samples, *COSTS.shape]
    if noise == "normal":
        z = itf.noise.Normal().sample(shape, seed=seed).numpy()
        grad_nu = z
    else:
        z = itf.noise.Gumbel().sample(shape, seed=seed).numpy()
        grad_nu = 1.0 - np.exp(-z)
    samples = np.stack([solver(COSTS + sigma * zi).numpy() for zi in z])
    weights = (samples * UPSTREAM).sum(-1, keepdims=True)
    np.testing.assert_allclose(y, samples.mean(0), rtol=1e-6)
    np.testing.assert_allclose(grad, (weights * grad_nu).mean(0) / sigma, rtol=1e-4, atol=1e-6)


def test_fenchel_young_loss_value_and_gradient():
    solver = itf.solvers.Argmax()
    seed = tf.constant([5, 6], tf.int64)
    y_true = np.eye(6, dtype=np.float32)[[0, 1, 2, 3]]
    costs = tf.constant(COSTS)
    with tf.GradientTape() as tape:
        tape.watch(costs)
        loss = itf.gradients.fenchel_young_loss(solver, costs, y_true, sigma=0.3, num_samples=4, seed=seed)
        total = tf.reduce_sum(loss)
    grad = tape.gradient(total, costs).numpy()
    z = itf.noise.Normal().sample([4, *COSTS.shape], seed=seed).numpy()
    samples = np.stack([solver(COSTS + 0.3 * zi).numpy() for zi in z])
    value = ((COSTS + 0.3 * z) * samples).sum(-1).mean(0) - (COSTS * y_true).sum(-1)
    np.testing.assert_allclose(loss.numpy(), value, rtol=1e-5)
    np.testing.assert_allclose(grad, samples.mean(0) - y_true, rtol=1e-6)
    assert np.all(loss.numpy() >= -1e-6)


def test_gradient_methods_work_in_tf_function():
    solver = itf.solvers.TopK(k=2)
    for method in ("identity", "blackbox", "imle", "perturbed"):
        obj = itf.gradients.get(method)

        @tf.function
        def step(c):
            with tf.GradientTape() as tape:
                tape.watch(c)
                loss = tf.reduce_sum(obj(solver, c, seed=tf.constant([1, 1], tf.int64)) * UPSTREAM)
            return tape.gradient(loss, c)

        assert np.all(np.isfinite(step(tf.constant(COSTS)).numpy()))


def test_identity_under_xla_matches_eager():
    solver = itf.solvers.TopK(k=3)

    def step(c):
        with tf.GradientTape() as tape:
            tape.watch(c)
            loss = tf.reduce_sum(itf.gradients.identity(solver, itf.projections.std(c)) * UPSTREAM)
        return tape.gradient(loss, c)

    eager = step(tf.constant(COSTS)).numpy()
    xla = tf.function(step, jit_compile=True)(tf.constant(COSTS)).numpy()
    np.testing.assert_allclose(xla, eager, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: itf.gradients.Blackbox(lam=0.0), "lam"),
        (lambda: itf.gradients.Blackbox(lam=-1), "lam"),
        (lambda: itf.gradients.IMLE(num_samples=0), "num_samples"),
        (lambda: itf.gradients.Perturbed(sigma=0), "sigma"),
        (lambda: itf.gradients.Perturbed(noise="cauchy"), "noise"),
        (lambda: itf.gradients.get("straight_through"), "gradient"),
        (lambda: itf.gradients.IMLE(noise="poisson"), "noise"),
    ],
)
def test_bad_hyperparameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "method",
    [
        itf.gradients.Identity(),
        itf.gradients.Blackbox(lam=3.0),
        itf.gradients.IMLE(
            lam=2.0, noise=itf.noise.SumOfGamma(k=3, tau=2.0, s=4, variant="dvae_notebook"), num_samples=2
        ),
        itf.gradients.Perturbed(sigma=0.2, num_samples=3, noise="gumbel"),
    ],
)
def test_gradient_config_round_trip(method):
    import keras

    config = keras.saving.serialize_keras_object(method)
    restored = itf.gradients.get(config)
    assert restored == method
    assert restored.get_config() == method.get_config()
