"""Projections: formulas, invariance of solutions, gradients, guards."""

import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf

RNG = np.random.default_rng(1)
COSTS = RNG.normal(size=(5, 3, 4)).astype(np.float32)  # projections act over all non-batch axes


def test_mean_norm_std_formulas():
    flat = COSTS.reshape(5, -1).astype(np.float64)
    centred = flat - flat.mean(1, keepdims=True)
    np.testing.assert_allclose(itf.projections.mean(COSTS).numpy().reshape(5, -1), centred, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        itf.projections.norm(COSTS).numpy().reshape(5, -1),
        flat / np.linalg.norm(flat, axis=1, keepdims=True),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        itf.projections.std(COSTS).numpy().reshape(5, -1),
        centred / np.linalg.norm(centred, axis=1, keepdims=True),
        rtol=1e-5,
        atol=1e-6,
    )


def test_plane_with_ones_is_mean_and_is_idempotent():
    a = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(itf.projections.plane(COSTS, a).numpy(), itf.projections.mean(COSTS).numpy(), atol=1e-6)
    a = RNG.normal(size=(3, 4)).astype(np.float32)
    once = itf.projections.plane(COSTS, a)
    np.testing.assert_allclose(itf.projections.plane(once, a).numpy(), once.numpy(), atol=1e-5)
    np.testing.assert_allclose(tf.reduce_sum(once * a, axis=[1, 2]).numpy(), 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="`a`"):
        itf.projections.plane(COSTS, np.ones(4))


def test_norm_guard_at_zero_has_finite_gradient():
    zero = tf.zeros((2, 3))
    with tf.GradientTape() as tape:
        tape.watch(zero)
        out = itf.projections.std(zero)
        loss = tf.reduce_sum(out * [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(out.numpy(), 0.0)
    assert np.all(np.isfinite(tape.gradient(loss, zero).numpy()))


def test_norm_in_float16_does_not_overflow():
    costs = tf.constant([[300.0, 400.0]], tf.float16)  # |w|^2 = 250000 > float16 max
    np.testing.assert_allclose(itf.projections.norm(costs).numpy(), [[0.6, 0.8]], rtol=1e-3)
    assert itf.projections.norm(costs).dtype == tf.float16


@pytest.mark.parametrize("solver", [itf.solvers.TopK(k=3), itf.solvers.Ranking(), itf.solvers.Argmax()])
@pytest.mark.parametrize("name", ["mean", "norm", "std"])
def test_solution_invariant_under_projection(solver, name):
    costs = RNG.normal(size=(20, 8)).astype(np.float32) * 3 + 2
    projected = itf.projections.get(name, solver)(costs)
    np.testing.assert_array_equal(solver(projected).numpy(), solver(costs).numpy())


def test_tsp_and_assignment_invariant_under_std():
    costs = RNG.uniform(size=(6, 5, 5)).astype(np.float32)
    costs = costs + np.transpose(costs, (0, 2, 1))
    for solver in (itf.solvers.LinearAssignment(), itf.solvers.TSP(method="dp")):
        np.testing.assert_array_equal(solver(itf.projections.std(costs)).numpy(), solver(costs).numpy())


def test_norm_jacobian_is_paper_eq_14():
    w = tf.constant(RNG.normal(size=(1, 5)))
    with tf.GradientTape() as tape:
        tape.watch(w)
        out = itf.projections.norm(w)
    jac = tape.batch_jacobian(out, w).numpy()[0]
    v = w.numpy()[0]
    r = np.linalg.norm(v)
    np.testing.assert_allclose(jac, np.eye(5) / r - np.outer(v, v) / r**3, rtol=1e-10)


def test_get_auto_and_errors():
    assert itf.projections.get("auto", itf.solvers.TopK(k=1)) is itf.projections.std
    assert itf.projections.get("auto", itf.solvers.IntegerLinearProgram()) is itf.projections.norm
    assert itf.projections.get(None) is None
    with pytest.raises(ValueError, match="Unknown projection"):
        itf.projections.get("l1")
    with pytest.raises(ValueError, match="solver"):
        itf.projections.get("auto")
    with pytest.raises(ValueError, match="hyperplane"):
        itf.projections.get("std", itf.solvers.IntegerLinearProgram())
